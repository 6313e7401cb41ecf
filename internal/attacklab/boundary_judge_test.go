package attacklab

import (
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"pkiboard/ca"
	"pkiboard/wire"
)

// The findings of defeated boundary rows, as the lab observes them.

func sniffDefeated() finding {
	return &sniffFinding{SID: "alice-sniff", Student: output{stdout: "alice-sniff submitted: receipt 000001"}, Scanned: 5100,
		Captured: true, Attempt: answer{Code: wire.CodeTokenInvalid}, Certs: 1}
}

func raceDefeated() finding {
	return &raceFinding{SID: "alice-race", Student: output{stdout: "alice-race submitted"}, Held: raceHold, Captured: true,
		Attempt: answer{Code: wire.CodeTokenInvalid}, Serial: "0a", Certs: []ca.CertView{{Serial: "0a", SID: "alice-race"}}, Forwarded: true}
}

func rogueDefeated() finding {
	return &rogueBoardFinding{Board: "blackboard", Scanned: 5100, Captured: true, Replay: answer{Code: wire.CodeTokenInvalid},
		Spent: answer{Code: wire.CodeTokenUsed}, TokenFrom: "read from data/ca/board-enroll.token", BoardCerts: 1}
}

func staleDefeated() finding {
	end := time.Now().Add(time.Minute)
	refused := func(reason string) output {
		return output{code: 1, stderr: "alice-stale: we refused the board (stale-status): the board's status … " + reason + " …"}
	}
	return &staleFinding{Serial: "0a", StolenCRL: 1, StolenEnd: end, NewSerial: "0b",
		Seen: 2, SeenRogue: refused(olderThanSeen), SeenAt: end.Add(-10 * time.Second),
		Fresh: refused(outOfTime), FreshAt: end.Add(time.Second), RogueActed: true}
}

// baselineFlood is the hellos refused for their date alone, at 60 µs each.
func baselineFlood() floodResult {
	return floodResult{Sent: 1920, Sources: 64, Answers: map[string]int{"stale-hello": 1920}, BoardCPU: 1920 * 60 * time.Microsecond}
}

func bombDefeated() finding {
	return &strangerFinding{What: "chain bombs", Want: wire.CodeUnknownCA, V1: v1ChainBomb, MaxFactor: 3, MaxBoard: 5500 * time.Microsecond,
		Flood: floodResult{Sent: 1920, Sources: 64, Answers: map[string]int{"unknown-ca": 1920}, Elapsed: 200 * time.Millisecond,
			BoardCPU: 180 * time.Millisecond, AttackerCPU: 160 * time.Millisecond, BoardLines: 20},
		Baseline: baselineFlood()}
}

func replayDefeated() finding {
	return &strangerFinding{What: "replays", Want: wire.CodeStaleHello, V1: v1Replay, MaxFactor: 1.5,
		Flood: floodResult{Sent: 1920, Sources: 64, Answers: map[string]int{"stale-hello": 1920}, Elapsed: 120 * time.Millisecond,
			BoardCPU: 120 * time.Millisecond, AttackerCPU: 100 * time.Millisecond},
		Baseline: baselineFlood()}
}

func forgedDefeated() finding {
	return &forgedFinding{Received: time.Now().Add(-72 * time.Hour),
		Alone:  output{code: 1, stderr: "pkiboard: verify-receipt x.json: no trust anchor: give the root certificate with --root FILE, or …"},
		Course: output{code: 1, stderr: `pkiboard: verify-receipt x.json: does NOT verify against the root AB:CD: session: the receipt's board certificate: not signed by the root "CUHK": x509: …`}}
}

func floodDefeated() finding {
	return &floodFinding{Sent: 10000, Conns: 400,
		Answers: map[string]int{"token-invalid": 2500, "wrong-root": 2500, "token-required": 2500, "bad-sid": 2500},
		Quiet:   refusalPhase{Requests: 5000, Elapsed: 2500 * time.Millisecond, DBBefore: 131072, DBAfter: 131072, Lines: 3, RefusalLines: 3},
		Student: output{stdout: "enrolled"}, During: true, Counted: 10000}
}

func revocationDefeated() finding {
	return &revocationFinding{SID: "carol-revoked", Revoke: output{stdout: "revoked 1 certificate(s); CRL 3 issued; 1 of 1 watching boards installed it"},
		Took: 12 * time.Millisecond, After: output{code: 1, stderr: "carol-revoked: refused (cert-revoked): your certificate …"},
		CRL: "3", Installed: 1, Watching: 1}
}

// judged gives a finding its verdict, as RunBoundary does.
func judged(f finding) *Result {
	r := &Result{}
	j := f.judge()
	r.Did, r.Detected = j.did, j.detected
	r.conclude(j.succeeded, j.problems, j.outcome)
	return r
}

func TestJudgeBoundary(t *testing.T) {
	issued := answer{Issued: &x509.Certificate{SerialNumber: big.NewInt(77)}}
	tests := []struct {
		name    string
		f       func() finding
		want    Verdict
		problem string // a part of a problem, for verdicts other than Defeated
	}{
		{"sniff defeated", sniffDefeated, Defeated, ""},
		{"sniff finds the token", func() finding { f := sniffDefeated().(*sniffFinding); f.Found = 2; return f }, Succeeded, "found 2 times"},
		{"sniff enrolls", func() finding {
			f := sniffDefeated().(*sniffFinding)
			f.Attempt, f.Certs = issued, 2
			return f
		}, Succeeded, "issued the observer a certificate"},
		{"sniff refused otherwise", func() finding {
			f := sniffDefeated().(*sniffFinding)
			f.Attempt = answer{Code: wire.CodeBadCSR}
			return f
		}, Unexpected, "not token-invalid"},
		{"sniff saw nothing", func() finding { f := sniffDefeated().(*sniffFinding); f.Captured = false; return f }, Unexpected, "saw no EnrollRequest"},

		{"race defeated", raceDefeated, Defeated, ""},
		{"race wins", func() finding {
			f := raceDefeated().(*raceFinding)
			f.Attempt = issued
			f.Student = output{code: 1, stderr: "alice-race: enroll alice-race: peer refused: token-used (code 24): the token was already used"}
			f.Certs = []ca.CertView{{Serial: "4d"}}
			return f
		}, Succeeded, "she got token-used"},
		{"race: her certificate is not the CA's", func() finding {
			f := raceDefeated().(*raceFinding)
			f.Certs = append(f.Certs, ca.CertView{Serial: "0b"})
			return f
		}, Unexpected, "want her certificate alone"},

		{"rogue board defeated", rogueDefeated, Defeated, ""},
		{"rogue board issued", func() finding {
			f := rogueDefeated().(*rogueBoardFinding)
			f.Spent, f.Others = issued, []string{"4d"}
			return f
		}, Succeeded, "no board of the lab held"},
		{"rogue board: token not spent", func() finding {
			f := rogueDefeated().(*rogueBoardFinding)
			f.Spent = answer{Code: wire.CodeTokenExpired}
			return f
		}, Unexpected, "not token-used"},

		{"stale status defeated", staleDefeated, Defeated, ""},
		{"stale status accepted", func() finding {
			f := staleDefeated().(*staleFinding)
			f.SeenRogue, f.RogueRead = output{stdout: "alice-stale submitted"}, 360
			return f
		}, Succeeded, "read 360 bytes"},
		{"stale status refused for its time only", func() finding {
			f := staleDefeated().(*staleFinding)
			f.SeenRogue = f.Fresh
			return f
		}, Unexpected, "for another reason"},
		{"stale status expired too soon", func() finding {
			f := staleDefeated().(*staleFinding)
			f.SeenAt = f.StolenEnd.Add(time.Second)
			return f
		}, Unexpected, "did not test the CRL number"},
		{"stale status refused board-revoked", func() finding {
			f := staleDefeated().(*staleFinding)
			f.Fresh = output{code: 1, stderr: "bob-stale: we refused the board (board-revoked): …"}
			return f
		}, Unexpected, "not the student's stale-status"},

		{"chain bomb defeated", bombDefeated, Defeated, ""},
		{"chain bomb costs the board", func() finding {
			f := bombDefeated().(*strangerFinding)
			f.Flood.BoardCPU = 1920 * 55 * time.Millisecond
			return f
		}, Succeeded, "more than 5.5ms"},
		{"chain bomb costs thrice the baseline", func() finding {
			f := bombDefeated().(*strangerFinding)
			f.Flood.BoardCPU = 1920 * 200 * time.Microsecond
			return f
		}, Succeeded, "more than 3.0×"},
		{"chain bomb answered otherwise", func() finding {
			f := bombDefeated().(*strangerFinding)
			f.Flood.Answers = map[string]int{"unknown-ca": 1900, "busy": 20}
			return f
		}, Unexpected, "20 answered busy"},

		{"replay defeated", replayDefeated, Defeated, ""},
		{"replay served", func() finding {
			f := replayDefeated().(*strangerFinding)
			f.Flood.Answers = map[string]int{"ServerHello": 1920}
			f.Flood.Step3 = 1920
			return f
		}, Succeeded, "answered 1920 of them with a ServerHello"},
		{"replay logged", func() finding {
			f := replayDefeated().(*strangerFinding)
			f.Flood.Step3 = 3
			return f
		}, Succeeded, "3 STEP 3 lines"},
		{"replay checked after the signature", func() finding {
			f := replayDefeated().(*strangerFinding)
			f.Flood.BoardCPU = 1920 * 210 * time.Microsecond
			return f
		}, Succeeded, "more than 1.5× what a hello refused for its date alone costs"},
		{"replay without a baseline", func() finding {
			f := replayDefeated().(*strangerFinding)
			f.Baseline.Answers = map[string]int{"busy": 1920}
			return f
		}, Unexpected, "baseline's hellos"},
		{"replay lost", func() finding {
			f := replayDefeated().(*strangerFinding)
			f.Flood.Failed, f.Flood.LastErr = 5, "EOF"
			return f
		}, Unexpected, "5 connections got no answer"},

		{"forged evidence defeated", forgedDefeated, Defeated, ""},
		{"forged evidence verifies", func() finding {
			f := forgedDefeated().(*forgedFinding)
			f.Alone = output{stdout: "x.json verifies: …"}
			return f
		}, Succeeded, "naming no root, accepted"},
		{"forged evidence refused mutely", func() finding {
			f := forgedDefeated().(*forgedFinding)
			f.Alone.stderr = "pkiboard: verify-receipt: something"
			return f
		}, Unexpected, "without saying how to give one"},

		{"flood defeated", floodDefeated, Defeated, ""},
		{"flood written", func() finding {
			f := floodDefeated().(*floodFinding)
			f.Quiet.DBAfter, f.Quiet.DBChanged = 131072+5000*800, true
			return f
		}, Succeeded, "800 bytes per refusal"},
		{"flood logged", func() finding {
			f := floodDefeated().(*floodFinding)
			f.Quiet.RefusalLines = 5000
			return f
		}, Succeeded, "logged 5000 lines"},
		{"flood starves the student", func() finding {
			f := floodDefeated().(*floodFinding)
			f.Student = output{code: 1, stderr: "peer refused: busy (code 10)"}
			return f
		}, Unexpected, "did not enroll during the flood"},

		{"revocation defeated", revocationDefeated, Defeated, ""},
		{"revoked student submits", func() finding {
			f := revocationDefeated().(*revocationFinding)
			f.After = output{stdout: "carol-revoked submitted"}
			return f
		}, Succeeded, "submitted after `revoke` returned"},
		{"revocation slow", func() finding {
			f := revocationDefeated().(*revocationFinding)
			f.Took = 8 * time.Second
			return f
		}, Unexpected, "not under 2s"},
		{"revocation not installed", func() finding {
			f := revocationDefeated().(*revocationFinding)
			f.Installed = 0
			return f
		}, Unexpected, "0 of 1 watching boards"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := judged(tt.f())
			if r.Verdict != tt.want {
				t.Fatalf("verdict %s, want %s; problems: %q", r.Verdict, tt.want, r.Problems)
			}
			if tt.want != Defeated && !strings.Contains(strings.Join(r.Problems, "\n"), tt.problem) {
				t.Errorf("problems %q do not say %q", r.Problems, tt.problem)
			}
			if r.Did == "" || r.Detected == "" || r.Outcome == "" {
				t.Errorf("a cell is empty: did %q, detected %q, outcome %q", r.Did, r.Detected, r.Outcome)
			}
		})
	}
}

// TestBoundariesComplete checks that every boundary row can be played and
// has its cells, and that the row ids are unique across the table.
func TestBoundariesComplete(t *testing.T) {
	ids := map[string]bool{}
	for _, row := range Rows() {
		if ids[row.ID] {
			t.Errorf("row id %q twice", row.ID)
		}
		ids[row.ID] = true
	}
	for _, b := range Boundaries() {
		if b.play == nil || b.Name == "" || b.Element == "" || b.Attacker == "" {
			t.Errorf("boundary %q is incomplete", b.ID)
		}
	}
}

// TestTokenForms checks that the observer looks for a token in each form it
// could take on the wire, and that tap.count finds them.
func TestTokenForms(t *testing.T) {
	token := ca.TokenPrefix + "q83vEjRWeJCrze8SNFZ4kKvN7xI0VniQq83vEjRWeJA"
	forms := tokenForms(token)
	if len(forms) != 8 {
		t.Fatalf("%d forms, want 8 (token, base64url, raw, base64 ×2, hex ×2, the derived private key)", len(forms))
	}
	for i, form := range forms {
		s := seen{streams: [][]byte{append(append([]byte("before"), form...), "after"...)}}
		if n := s.count(forms); n < 1 {
			t.Errorf("form %d not found", i)
		}
	}
	if n := (seen{streams: [][]byte{[]byte("nothing of the token here")}}).count(forms); n != 0 {
		t.Errorf("found %d times in a stream without it", n)
	}
}
