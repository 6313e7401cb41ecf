// Package console is the staff console of the board and of the CA: the
// server-rendered pages (html/template, embedded with their one style
// sheet) that course staff use in a browser — the board's assignments with
// who submitted, who is late and who is missing, each student's versions
// with their receipts, the downloads; the CA's certificates, revocation and
// tokens.
//
// It is not the door: who may see a page, the session, the CSRF token and
// the audit belong to internal/web, whose Server the pages are registered
// on (Board, CA). Every page is plain semantic HTML that works without
// JavaScript and with the keyboard alone; every action is a POST form.
// Nothing imports console but roles, which wires it into each daemon.
package console
