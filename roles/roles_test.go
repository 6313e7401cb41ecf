package roles

import (
	"testing"

	"pkiboard/internal/config"
	"pkiboard/session"
)

func TestMinBoardFrameFitsARecord(t *testing.T) {
	if config.MinBoardFrame != session.MaxRecord {
		t.Errorf("config.MinBoardFrame = %d, session.MaxRecord = %d: they must agree", config.MinBoardFrame, session.MaxRecord)
	}
}
