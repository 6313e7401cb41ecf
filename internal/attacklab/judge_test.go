package attacklab

import (
	"strings"
	"testing"
)

// scenario returns the scenario with the given ID.
func scenario(t *testing.T, id string) Scenario {
	t.Helper()
	for _, sc := range Scenarios() {
		if sc.ID == id {
			return sc
		}
	}
	t.Fatalf("no scenario %q", id)
	return Scenario{}
}

// The evidence of a defeated row of each kind, as the processes report it.
func tamperDefeated() *evidence {
	return &evidence{
		student: output{code: 1, stderr: "pkiboard: student: 1 of 1 IDs failed:\n  alice-tamper: refused (bad-record-mac): a record …\n"},
		board:   []record{{"msg": "submission not received", "code": "bad-record-mac"}},
		adversary: []record{
			{"msg": "ATTACK tamper: flipped bit 3 of byte 17 of the ciphertext of record 1 (Data, 380 bytes), then forwarded it", "action": true},
			{"msg": "ATTACK tamper: finished", "plaintext_found": 0.0},
		},
		finished: record{"msg": "ATTACK tamper: finished", "plaintext_found": 0.0},
	}
}

func eavesdropDefeated() *evidence {
	fin := record{"msg": "ATTACK eavesdrop: finished", "plaintext_found": 0.0, "bytes_searched": 4484.0, "submission_bytes": 410.0}
	return &evidence{
		student:   output{stdout: "alice-eavesdrop sign finished\nalice-eavesdrop submitted: receipt 000001, SHA-256 ab…, saved as x\n"},
		board:     []record{{"msg": "STEP 6: MAC verified, submission stored", "sid": "alice-eavesdrop"}},
		adversary: []record{{"msg": "ATTACK eavesdrop: relayed every frame unchanged (8 frames, 4516 bytes)", "action": true}, fin},
		finished:  fin,
		stored:    []submission{{ID: "000001", SID: "alice-eavesdrop"}},
	}
}

func TestJudge(t *testing.T) {
	tests := []struct {
		name    string
		id      string
		ev      func() *evidence
		want    Verdict
		problem string // a part of a problem, for verdicts other than Defeated
	}{
		{"tamper defeated", "tamper", tamperDefeated, Defeated, ""},
		{"tamper stored", "tamper", func() *evidence {
			ev := tamperDefeated()
			ev.stored = []submission{{ID: "000002", SID: "alice-tamper", Suite: "aes-256-ctr-hmac-sha256"}}
			return ev
		}, Succeeded, "the board stored 1 submission(s), want 0"},
		{"tamper stopped by the file hash, not the MAC", "tamper", func() *evidence {
			ev := tamperDefeated()
			ev.board = []record{{"msg": "submission not received", "code": "file-mismatch"}}
			ev.student.stderr = "  alice-tamper: refused (file-mismatch): …"
			return ev
		}, Unexpected, "the board did not refuse with bad-record-mac"},
		{"tamper not carried out", "tamper", func() *evidence {
			ev := tamperDefeated()
			ev.adversary = ev.adversary[1:]
			return ev
		}, Unexpected, "did not carry out the attack"},
		{"tamper with a receipt", "tamper", func() *evidence {
			ev := tamperDefeated()
			ev.student = output{stdout: "alice-tamper submitted: receipt 000003, SHA-256 ab…"}
			ev.board = nil
			return ev
		}, Unexpected, "the student got a receipt"},
		{"adversary never finished", "tamper", func() *evidence {
			ev := tamperDefeated()
			ev.finished = nil
			return ev
		}, Unexpected, "did not log the end"},
		{"eavesdrop defeated", "eavesdrop", eavesdropDefeated, Defeated, ""},
		{"eavesdrop reads plaintext", "eavesdrop", func() *evidence {
			ev := eavesdropDefeated()
			ev.finished["plaintext_found"] = 20.0
			return ev
		}, Succeeded, "found the message text or the SID 20 times"},
		{"impersonation reads the submission", "impersonate-self", func() *evidence {
			return &evidence{
				student:   output{code: 1, stderr: "alice: session: waiting for the receipt: EOF"},
				adversary: []record{{"msg": "ATTACK impersonate-board: played the board itself …", "action": true}},
				finished:  record{"msg": "ATTACK impersonate-board: finished", "plaintext_read": 480.0},
			}
		}, Succeeded, "read 480 bytes of the submission"},
		{"downgrade stopped by the key transport", "downgrade", func() *evidence {
			return &evidence{
				student:   output{code: 1, stderr: "alice-downgrade: we refused the board (key-transport-failed): …"},
				adversary: []record{{"msg": "ATTACK downgrade: stripped …", "action": true}},
				finished:  record{"msg": "ATTACK downgrade: finished"},
			}
		}, Unexpected, "the board did not refuse with bad-hello-signature"},
		{"downgrade defeated, seen in the clear", "downgrade", func() *evidence {
			return &evidence{
				student:   output{code: 1, stderr: "alice-downgrade: refused (bad-hello-signature): the signature over your hello …"},
				adversary: []record{{"msg": "ATTACK downgrade: stripped …", "action": true}},
				finished:  record{"msg": "ATTACK downgrade: finished", "board_refusal": 64.0},
			}
		}, Defeated, ""},
		{"replay defeated, seen in the clear", "replay", func() *evidence {
			ev := eavesdropDefeated()
			ev.adversary = append(ev.adversary, record{"msg": "ATTACK replay: recorded the session …", "action": true})
			ev.finished["replay_refusal"] = 63.0
			return ev
		}, Defeated, ""},
		{"downgrade stored under rc4", "downgrade", func() *evidence {
			return &evidence{
				student:   output{stdout: "alice-downgrade submitted: receipt 000004, SHA-256 ab…"},
				adversary: []record{{"msg": "ATTACK downgrade: stripped …", "action": true}},
				finished:  record{"msg": "ATTACK downgrade: finished"},
				stored:    []submission{{ID: "000004", SID: "alice-downgrade", Suite: "rc4-hmac-sha256"}},
			}
		}, Succeeded, "rc4-hmac-sha256"},
		{"keys recovered", "steal-key", func() *evidence {
			ev := eavesdropDefeated()
			ev.finished["keys_recovered"] = true
			return ev
		}, Succeeded, "recovered the record keys"},
		{"replay accepted", "replay", func() *evidence {
			ev := eavesdropDefeated()
			ev.board = append(ev.board, record{"msg": "submission not received", "code": "bad-record-mac"})
			ev.finished["replay_answers"] = "FileOffset:1 Receipt:1"
			return ev
		}, Succeeded, "receipt for the replayed session"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc := scenario(t, tt.id)
			r := &Result{ID: sc.ID, Name: sc.Name}
			judge(r, sc, tt.ev())
			if r.Verdict != tt.want {
				t.Fatalf("verdict %s, want %s; problems: %q", r.Verdict, tt.want, r.Problems)
			}
			if tt.want != Defeated && !strings.Contains(strings.Join(r.Problems, "\n"), tt.problem) {
				t.Errorf("problems %q do not say %q", r.Problems, tt.problem)
			}
			if tt.want == Defeated && r.Did == "" {
				t.Error("no action in the table")
			}
		})
	}
}

func TestMarkdown(t *testing.T) {
	r := &Result{Name: "tamper", Did: "flipped a|bit", Detected: "the board", Outcome: "nothing", Verdict: Defeated}
	out := Markdown([]*Result{r, {Name: "reorder", Verdict: Succeeded}})
	for _, want := range []string{`flipped a\|bit`, "**defeated**", "**SUCCEEDED**", "1 of 2 attacks defeated"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if AllDefeated([]*Result{r, {Verdict: Unexpected}}) || !AllDefeated([]*Result{r}) || AllDefeated(nil) {
		t.Error("AllDefeated is wrong")
	}
}
