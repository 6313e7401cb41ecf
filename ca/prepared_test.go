package ca

import (
	"context"
	"testing"

	"pkiboard/wire"
)

// TestEnrollStatementsPrepared checks that an enrollment runs only prepared
// statements (sqlstore.Options.Prepared): compiling SQL anew for each
// certificate cost a sixth of the CA's CPU under load.
func TestEnrollStatementsPrepared(t *testing.T) {
	tests := []struct {
		name  string
		token bool
		run   func(t *testing.T, tc *testCA, sid, token string)
	}{
		{"open policy", false, func(t *testing.T, tc *testCA, sid, _ string) { tc.mustEnroll(t, sid, "") }},
		{"a token", true, func(t *testing.T, tc *testCA, sid, token string) { tc.mustEnroll(t, sid, token) }},
		{"a token's request answered again", true, func(t *testing.T, tc *testCA, sid, token string) {
			key := newKey(t)
			req := tc.req(t, wire.ProfileStudent, sid, makeCSR(t, key, sid), token)
			for range 2 {
				if _, err := tc.Enroll(context.Background(), req); err != nil {
					t.Fatal(err)
				}
			}
		}},
		{"a spent token refused and recorded", true, func(t *testing.T, tc *testCA, sid, token string) {
			tc.mustEnroll(t, sid, token)
			_, err := tc.enroll(t, sid, token)
			wantRefusal(t, err, wire.CodeTokenUsed)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := newCA(t, func(o *Options) {
				if tt.token {
					o.Policy = PolicyToken
				}
			})
			sid, token := "1155000001", ""
			if tt.token {
				token = tc.token(t, sid)
			}
			before := tc.db.Stats().Unprepared
			tt.run(t, tc, sid, token)
			if n := tc.db.Stats().Unprepared - before; n != 0 {
				t.Fatalf("statements compiled from their text during the enrollment: got %d want 0", n)
			}
		})
	}
}
