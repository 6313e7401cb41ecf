// Package layout holds the test of the import rules of DESIGN.md §2, which
// keep the layers apart: wire and rc4 import nothing of ours; ca and board
// never import roles; only the main package imports roles, and no test
// outside roles and main does; nothing imports
// console (the staff console's pages) but roles. It has no code of its own.
package layout
