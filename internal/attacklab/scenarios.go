package attacklab

import (
	"pkiboard/adversary"
	"pkiboard/wire"
)

// Party is who detects an attack.
type Party int

const (
	Nobody  Party = iota // a passive attack: nothing to detect, nothing to gain
	Board                // the board refuses
	Student              // the student refuses
)

func (p Party) String() string { return [...]string{"nobody", "the board", "the student"}[p] }

// Expect is what a defeated attack looks like.
type Expect struct {
	By      Party     // who detects it
	Code    wire.Code // with which code (By != Nobody)
	Stored  int       // submissions the board stores in the row (0; 1 for passive attacks and replay's recorded session)
	Receipt bool      // the student gets a receipt
	Outcome string    // the outcome, said for the table
}

// Scenario is one row of the table: an attack, how the system and the
// student are set up for it, and what defeats it.
type Scenario struct {
	ID       string // short name, also in the student's SID
	Name     string // the row's name in the table
	Attack   string // the adversary's --attack
	WithCert bool   // the adversary holds mallory's certificate and key
	Report   bool   // the student submits a 200 KiB report (four Data records) instead of the ten lines
	// BothSuites makes the student offer aes-256-ctr-hmac-sha256 and
	// rc4-hmac-sha256 (the board of the lab allows RC4).
	BothSuites bool
	Expect     Expect
	// Element is the protocol element that stops the attack.
	Element string
}

// Scenarios returns every row of the table, in order.
func Scenarios() []Scenario {
	return []Scenario{
		{
			ID: "eavesdrop", Name: "eavesdrop", Attack: adversary.Eavesdrop,
			Expect:  Expect{By: Nobody, Stored: 1, Receipt: true, Outcome: "only ciphertext seen"},
			Element: "record encryption (AES-256-CTR) under keys only the two ends can derive: key transport to the certificate key, and X-Wing",
		},
		{
			ID: "tamper", Name: "tamper", Attack: adversary.Tamper,
			Expect:  Expect{By: Board, Code: wire.CodeBadRecordMAC, Outcome: "nothing stored; no receipt"},
			Element: "the MAC: HMAC-SHA256 over each record, checked before a byte is used",
		},
		{
			ID: "truncate", Name: "truncate", Attack: adversary.Truncate, Report: true,
			Expect:  Expect{By: Board, Code: wire.CodeBadRecordMAC, Outcome: "nothing stored; no receipt"},
			Element: "sequence numbers: the next record's MAC is computed over the number the board expects",
		},
		{
			ID: "reorder", Name: "reorder", Attack: adversary.Reorder, Report: true,
			Expect:  Expect{By: Board, Code: wire.CodeBadRecordMAC, Outcome: "nothing stored; no receipt"},
			Element: "sequence numbers in the MAC",
		},
		{
			ID: "replay", Name: "replay", Attack: adversary.Replay,
			Expect:  Expect{By: Board, Code: wire.CodeStaleHello, Stored: 1, Receipt: true, Outcome: "nothing new stored (only the legitimate session)"},
			Element: "the replay cache: the board remembers each proven hello for board.hello_window and refuses it again for a hash and a lookup, before any work (were it not remembered, the replay would get fresh keys and fail the MAC)",
		},
		{
			ID: "swap-cert", Name: "swap-cert", Attack: adversary.SwapCert, WithCert: true,
			Expect:  Expect{By: Board, Code: wire.CodeSIDMismatch, Outcome: "nothing stored; no receipt"},
			Element: "CN binding: the certificate's CN must be the SID claimed",
		},
		{
			ID: "swap-cert-sid", Name: "swap-cert (and the SID)", Attack: adversary.SwapCertAndSID, WithCert: true,
			Expect:  Expect{By: Student, Code: wire.CodeBadTranscriptSignature, Outcome: "student refused; nothing sent, nothing stored"},
			Element: "transcript signature: the board signs the hello it received (the adversary's own, signed with its key), which is not the student's",
		},
		{
			ID: "impersonate-self", Name: "impersonate-board (self-signed)", Attack: adversary.ImpersonateBoard,
			Expect:  Expect{By: Student, Code: wire.CodeUnknownCA, Outcome: "student refused; nothing sent"},
			Element: "chain check: the board's certificate must chain to the course root",
		},
		{
			ID: "impersonate-student-cert", Name: "impersonate-board (a student certificate)", Attack: adversary.ImpersonateBoard, WithCert: true,
			Expect:  Expect{By: Student, Code: wire.CodeWrongUsage, Outcome: "student refused; nothing sent"},
			Element: "chain check: the board's certificate must have EKU serverAuth (a student's has clientAuth)",
		},
		{
			ID: "downgrade", Name: "downgrade", Attack: adversary.Downgrade, BothSuites: true,
			Expect:  Expect{By: Board, Code: wire.CodeBadHelloSignature, Outcome: "board refused the hello; nothing sent, nothing stored"},
			Element: "the student's signature over her hello: it covers the offered suites (and the board's transcript signature would too)",
		},
		{
			ID: "steal-key", Name: "steal-session-key", Attack: adversary.StealSessionKey, WithCert: true,
			Expect:  Expect{By: Nobody, Stored: 1, Receipt: true, Outcome: "only ciphertext seen; no key verified"},
			Element: "key transport to the certificate key (and X-Wing): the session key never crosses the wire in the clear",
		},
	}
}
