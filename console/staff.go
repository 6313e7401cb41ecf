package console

import (
	"net/http"

	"pkiboard/internal/web"
)

// staffOf is the name the request's session was opened under, which every
// action is audited under.
func staffOf(r *http.Request) string { return web.Staff(r) }
