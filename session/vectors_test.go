package session

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/hkdf"
	"crypto/hpke"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/cryptotest"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/internal/vectors"
	"pkiboard/wire"
)

// The session's part of the test vectors of PROTOCOL.md's appendix: a board
// session for each key transport (RSA-OAEP with an RSA-2048 student, HPKE
// with a P-256 and with a P-384 student) and each suite, every handshake
// frame, every intermediate value and every record of a short submission to
// an assignment — the SubmitRequest, the board's Terms, the file, SubmitEnd
// with the statement over the Terms body, the receipt of version 3 — and the
// receipt file (testdata/vectors/session-*.json); and one session of a
// History exchange (session-p256-history.json), half an hour later, whose
// board lists two stored receipts, of versions 3 and 2, and whose student
// writes their receipt files. They
// are made by Server and Client, in process over net.Pipe, with the PKI and
// the board's status of package ca's vectors (pki.json, board-status.json).
//
// What is random in a session is fixed: the randoms, the session key and
// RSA-OAEP's seed come from ServerConfig.Rand and ClientConfig.Rand, read
// from vectors.Script; the student's X-Wing key from its seed
// (testHookKEMKey); the X-Wing encapsulation from its randomness
// (testHookEncapsulate); every signature is deterministic (vectors.Signer:
// RFC 6979, or RSA-PSS with a salt the vector lists). What is left is HPKE's
// ephemeral key in the key transport of an ECDSA student, which crypto/hpke
// draws itself: testing/cryptotest.SetGlobalRandom fixes it when the vectors
// are made (-update), and afterwards the committed encrypted_key is pinned
// (testHookServerHello), for a Go that draws otherwise would make another;
// it must still decrypt to the session key.
//
// `go test ./session -run Vectors -update` rewrites the files, after
// package ca's vectors (go test ./ca -run Vectors -update).

// sessionSpec is one session vector: the student's key, the suites offered,
// whether the board allows RC4, and the request: a submission, or a
// HistoryRequest.
type sessionSpec struct {
	name     string // the file is session-<name>.json
	student  string // a key of pki.json's students
	suites   []uint16
	allowRC4 bool
	history  bool // the request is a HistoryRequest, not a SubmitRequest
}

var sessionSpecs = []sessionSpec{
	{"rsa2048-aes", "rsa2048", []uint16{SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256}, false, false},
	{"rsa2048-rc4", "rsa2048", []uint16{SuiteRC4HMACSHA256, SuiteAES256CTRHMACSHA256}, true, false},
	{"p256-aes", "p256", []uint16{SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256}, false, false},
	{"p256-rc4", "p256", []uint16{SuiteRC4HMACSHA256, SuiteAES256CTRHMACSHA256}, true, false},
	{"p384-aes", "p384", []uint16{SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256}, false, false},
	{"p384-rc4", "p384", []uint16{SuiteRC4HMACSHA256, SuiteAES256CTRHMACSHA256}, true, false},
	{"p256-history", "p256", []uint16{SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256}, false, true},
	{"rsa2048-gcm", "rsa2048", []uint16{SuiteAES256GCM, SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256}, false, false},
	{"p256-gcm", "p256", []uint16{SuiteAES256GCM, SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256}, false, false},
	{"p384-gcm", "p384", []uint16{SuiteAES256GCM, SuiteAES256CTRHMACSHA256, SuiteRC4HMACSHA256}, false, false},
}

// vecHistorySubmission is the submission vector whose receipt the history
// vector's board lists.
const vecHistorySubmission = "p256-aes"

func (s sessionSpec) file() string { return "session-" + s.name + ".json" }

// times returns the student's and the board's clock in the session of s:
// the history's session is half an hour after the submissions'.
func (s sessionSpec) times() (student, board time.Time) {
	if s.history {
		return vecHelloTime.Add(vecHistoryLater), vecBoardTime.Add(vecHistoryLater)
	}
	return vecHelloTime, vecBoardTime
}

// The moments of the sessions: five minutes after the CA signed the board's
// status (board-status.json); the board's clock is 40 ms ahead of the
// student's.
var (
	vecHelloTime = time.Date(2026, 9, 1, 8, 15, 0, 250*1e6, time.UTC)
	vecBoardTime = vecHelloTime.Add(40 * time.Millisecond)
	// vecReceivedTime is the board's clock when it reads SubmitEnd: the
	// instant that counts, 51 s after the due time of vecTerms.
	vecReceivedTime = vecBoardTime
	// vecTerms are the terms of the vectors' assignment: opened a week
	// before, due 51 s before the submission, locked a day after the due
	// time, with an extension.
	vecTerms = wire.Terms{Assignment: vecAssignment, Opens: uint64(vecHelloTime.Add(-7 * 24 * time.Hour).UnixMilli()),
		Due: uint64(vecBoardTime.Add(-51 * time.Second).UnixMilli()), Lock: uint64(vecBoardTime.Add(24 * time.Hour).UnixMilli()),
		Extended: true, MaxSize: 1 << 20}
)

const (
	vecBoardName  = "blackboard"
	vecAssignment = "hw1"
	vecFileName   = "Assignment 1.txt" // the original name, whose safe name is Assignment_1.txt
	vecReceiptID  = "000001"
	// The history's session, and its receipt of version 2: a submission to
	// the board before version 3, five minutes before the submissions of
	// version 3.
	vecHistoryLater = 30 * time.Minute
	vecV2ReceiptID  = "000000"
	vecV2FileName   = "lab1.txt"
	vecV2Before     = 5 * time.Minute
)

// vecPKI is pki.json, as package ca writes it.
type vecPKI struct {
	Description string               `json:"description"`
	Root        vecEntity            `json:"root"`
	Board       vecEntity            `json:"board"`
	Students    map[string]vecEntity `json:"students"`
}

type vecEntity struct {
	Name        string      `json:"name"`
	KeyType     string      `json:"key_type"`
	KeyPKCS8    vectors.Hex `json:"key_pkcs8"`
	Certificate vectors.Hex `json:"certificate"`
	CertSHA256  vectors.Hex `json:"cert_sha256"`
	Serial      vectors.Hex `json:"serial"`
}

// vecStatusFile is board-status.json, as package ca writes it.
type vecStatusFile struct {
	Description string `json:"description"`
	Time        string `json:"time"`
	Status      struct {
		Serial     vectors.Hex `json:"serial"`
		CertSHA256 vectors.Hex `json:"cert_sha256"`
		CRLNumber  uint64      `json:"crl_number"`
		Revoked    uint8       `json:"revoked"`
		ThisUpdate uint64      `json:"this_update"`
		NextUpdate uint64      `json:"next_update"`
		Signature  vectors.Hex `json:"signature"`
	} `json:"status"`
	SignedBytes vectors.Hex `json:"signed_bytes"`
	Encoding    vectors.Hex `json:"encoding"`
}

// sessionFile is a session vector file: a submission's (Submission set) or
// a history's (History set).
type sessionFile struct {
	Description string           `json:"description"`
	Inputs      sessionInputs    `json:"inputs"`
	Handshake   sessionHandshake `json:"handshake"`
	Keys        sessionKeys      `json:"keys"`
	Records     []vecRecord      `json:"records"`
	Submission  *vecSubmission   `json:"submission,omitempty"`
	History     *vecHistory      `json:"history,omitempty"`
}

// sessionInputs are a vector's fixed inputs, besides pki.json and
// board-status.json.
type sessionInputs struct {
	Student       string   `json:"student"` // a key of pki.json's students
	SID           string   `json:"sid"`
	BoardName     string   `json:"board_name"`
	SuitesOffered []uint16 `json:"suites_offered"`
	AllowRC4      bool     `json:"board_allows_rc4"`
	StudentTime   string   `json:"student_time"`
	StudentTimeMS uint64   `json:"student_time_ms"` // the hello's time
	BoardTime     string   `json:"board_time"`

	ClientRandom                 vectors.Hex `json:"client_random"`
	XWingSeed                    vectors.Hex `json:"xwing_seed"`
	BoardRandom                  vectors.Hex `json:"board_random"`
	SessionKey                   vectors.Hex `json:"session_key"`
	OAEPSeed                     vectors.Hex `json:"oaep_seed,omitempty"`
	XWingEncapsulationRandomness vectors.Hex `json:"xwing_encapsulation_randomness"`

	// A submission's: the assignment asked for, the file (its original
	// name and content), the terms the board's course gives, and the
	// board's choices for the receipt (its id; received, the board's clock
	// when it reads SubmitEnd).
	Assignment  string          `json:"assignment,omitempty"`
	FileName    string          `json:"original,omitempty"`
	FileContent vectors.Hex     `json:"file_content,omitempty"`
	Terms       *vecTermsFields `json:"terms,omitempty"`
	ReceiptID   string          `json:"receipt_id,omitempty"`
	Received    string          `json:"received,omitempty"`
	ReceivedMS  uint64          `json:"received_ms,omitempty"`

	studentAt, boardAt time.Time // StudentTime and BoardTime
	history            bool      // the request is a HistoryRequest
}

// vecTermsFields are the terms the board's course gives the student (the
// Terms message but for its assignment, the one asked for).
type vecTermsFields struct {
	Opens    uint64 `json:"opens"`
	Due      uint64 `json:"due"`
	Lock     uint64 `json:"lock"`
	Extended bool   `json:"extended"`
	MaxSize  uint64 `json:"max_size"`
}

// sessionHandshake are the handshake's frames and values, in the order of
// their making.
type sessionHandshake struct {
	KEMPublicKey       vectors.Hex `json:"kem_public_key"`
	HelloPrefixSHA256  vectors.Hex `json:"hello_prefix_sha256"`
	HelloSignedBytes   vectors.Hex `json:"hello_signed_bytes"`
	HelloSignature     vectors.Hex `json:"hello_signature"`
	HelloSignatureSalt vectors.Hex `json:"hello_signature_salt,omitempty"`
	ClientHelloFrame   vectors.Hex `json:"client_hello_frame"`
	HHello             vectors.Hex `json:"h_hello"`

	Suite           uint16       `json:"suite"`
	KeyTransport    uint8        `json:"key_transport"`
	SessionKeyLabel vectors.Hex  `json:"session_key_label"`
	EncryptedKey    vectors.Hex  `json:"encrypted_key"`
	HPKE            *sessionHPKE `json:"hpke,omitempty"`

	KEMInfo           vectors.Hex `json:"kem_info"`
	KEMCiphertext     vectors.Hex `json:"kem_ciphertext"`
	KEMSharedSecret   vectors.Hex `json:"kem_shared_secret"`
	KEMExporterSecret vectors.Hex `json:"kem_exporter_secret"`
	PQSecret          vectors.Hex `json:"pq_secret"`

	ServerHelloFrame        vectors.Hex `json:"server_hello_frame"`
	ServerVerifySignedBytes vectors.Hex `json:"server_verify_signed_bytes"`
	ServerVerifySignature   vectors.Hex `json:"server_verify_signature"`
	ServerVerifyFrame       vectors.Hex `json:"server_verify_frame"`
	TH                      vectors.Hex `json:"th"`
}

// sessionHPKE are the values of the session key's HPKE (key transports 2
// and 3), as the recipient computes them.
type sessionHPKE struct {
	Enc          vectors.Hex `json:"enc"`
	Ciphertext   vectors.Hex `json:"ciphertext"`
	SharedSecret vectors.Hex `json:"shared_secret"`
	Key          vectors.Hex `json:"key"`
	BaseNonce    vectors.Hex `json:"base_nonce"`
}

// sessionKeys is the key schedule's output (PROTOCOL.md §5.2).
type sessionKeys struct {
	PRK    vectors.Hex `json:"prk"`
	C2SKey vectors.Hex `json:"c2s_key"`
	C2SMAC vectors.Hex `json:"c2s_mac"`
	C2SIV  vectors.Hex `json:"c2s_iv"`
	S2CKey vectors.Hex `json:"s2c_key"`
	S2CMAC vectors.Hex `json:"s2c_mac"`
	S2CIV  vectors.Hex `json:"s2c_iv"`
}

// vecRecord is one record (PROTOCOL.md §5.3).
type vecRecord struct {
	Direction       string      `json:"direction"` // "c2s" or "s2c"
	Seq             uint64      `json:"seq"`
	Type            uint8       `json:"type"`
	KeystreamOffset *uint64     `json:"keystream_offset,omitempty"` // stream suites: where its body starts in its direction's keystream
	Nonce           vectors.Hex `json:"nonce,omitempty"`            // aes-256-gcm: iv[:12] XOR seq
	AAD             vectors.Hex `json:"aad,omitempty"`              // aes-256-gcm: type || n
	Plaintext       vectors.Hex `json:"plaintext"`                  // the message's body
	Ciphertext      vectors.Hex `json:"ciphertext"`
	Tag             vectors.Hex `json:"tag"`
	Frame           vectors.Hex `json:"frame"`
}

// vecSubmission is the submission's evidence.
type vecSubmission struct {
	Name               string      `json:"name"`
	Size               uint64      `json:"size"`
	SHA256             vectors.Hex `json:"sha256"`
	TermsBody          vectors.Hex `json:"terms_body"`
	Statement          vectors.Hex `json:"statement"`
	Signature          vectors.Hex `json:"signature"`
	SignatureSalt      vectors.Hex `json:"signature_salt,omitempty"`
	Receipt            vecReceipt  `json:"receipt"`
	ReceiptSignedBytes vectors.Hex `json:"receipt_signed_bytes"`
	ReceiptFile        string      `json:"receipt_file"`
}

// vecReceipt is a receipt's fields; a receipt of version 2 has no
// assignment, original, due, late and version.
type vecReceipt struct {
	ID              string      `json:"id"`
	SID             string      `json:"sid"`
	Serial          vectors.Hex `json:"serial"`
	Assignment      string      `json:"assignment,omitempty"`
	Original        string      `json:"original,omitempty"`
	Name            string      `json:"name"`
	Size            uint64      `json:"size"`
	SHA256          vectors.Hex `json:"sha256"`
	Received        uint64      `json:"received"`
	Due             uint64      `json:"due,omitempty"`
	Late            uint64      `json:"late,omitempty"`
	Version         uint32      `json:"version,omitempty"`
	BoardCertSHA256 vectors.Hex `json:"board_cert_sha256"`
	Signature       vectors.Hex `json:"signature"`
}

// vecHistory is a history exchange: the assignment asked for (empty for
// all) and the receipts the board lists, newest first, each signed by the
// board of pki.json and given with its certificate.
type vecHistory struct {
	Assignment string           `json:"assignment"`
	Items      []vecHistoryItem `json:"items"`
}

// vecHistoryItem is one receipt of a history: the protocol version it was
// signed under, its fields, the bytes signed, its body as the History
// carries it, and the receipt file the student writes of it.
type vecHistoryItem struct {
	Version     uint16      `json:"version"`
	Receipt     vecReceipt  `json:"receipt"`
	SignedBytes vectors.Hex `json:"receipt_signed_bytes"`
	Body        vectors.Hex `json:"receipt_body"`
	ReceiptFile string      `json:"receipt_file"`
}

const (
	vecSessionDescription = "A board session (PROTOCOL.md section 5; Appendix: test vectors) with the PKI of pki.json and the status of board-status.json: its fixed inputs, every handshake frame and value, the key schedule, every record of a short submission to an assignment in order of sending (SubmitRequest, Terms, FileHeader, FileOffset, Data, SubmitEnd, Receipt), the Terms body, the statement over it, the receipt of version 3 and the receipt file. A frame is its 4-byte length, then its payload."
	vecHistoryDescription = "A board session (PROTOCOL.md section 5; Appendix: test vectors) with the PKI of pki.json and the status of board-status.json whose request is a HistoryRequest: its fixed inputs, every handshake frame and value, the key schedule, the two records (HistoryRequest, History) and the receipts the History lists, newest first: the receipt of session-p256-aes.json (version 3) and one of version 2, each with the bytes the board signed, its body as the History carries it and the receipt file the student writes of it. A frame is its 4-byte length, then its payload."
)

// vecParty is a key and its certificate, parsed.
type vecParty struct {
	sid  string
	cert *x509.Certificate
	key  crypto.Signer
}

// vecFixture is pki.json and board-status.json, parsed.
type vecFixture struct {
	root     *x509.Certificate
	board    vecParty
	students map[string]vecParty
	status   []byte
}

func loadVecFixture(tb testing.TB) *vecFixture {
	tb.Helper()
	var p vecPKI
	var s vecStatusFile
	vectors.Load(tb, "pki.json", &p)
	vectors.Load(tb, "board-status.json", &s)
	party := func(e vecEntity) vecParty {
		cert, err := x509.ParseCertificate(e.Certificate)
		if err != nil {
			tb.Fatal(err)
		}
		k, err := x509.ParsePKCS8PrivateKey(e.KeyPKCS8)
		if err != nil {
			tb.Fatal(err)
		}
		return vecParty{sid: e.Name, cert: cert, key: k.(crypto.Signer)}
	}
	f := &vecFixture{root: party(p.Root).cert, board: party(p.Board), students: map[string]vecParty{}, status: s.Encoding}
	for name, e := range p.Students {
		f.students[name] = party(e)
	}
	return f
}

// inputs returns the fixed inputs of spec: its randoms from the streams of
// its name.
func (spec sessionSpec) inputs(f *vecFixture) sessionInputs {
	st := f.students[spec.student]
	label := "session " + spec.name + " "
	studentAt, boardAt := spec.times()
	in := sessionInputs{
		Student: spec.student, SID: st.sid, BoardName: vecBoardName, SuitesOffered: spec.suites, AllowRC4: spec.allowRC4,
		StudentTime: studentAt.Format(receiptTime), StudentTimeMS: uint64(studentAt.UnixMilli()),
		BoardTime:    boardAt.Format(receiptTime),
		ClientRandom: vectors.Bytes(label+"client_random", 32), XWingSeed: vectors.Bytes(label+"xwing_seed", 32),
		BoardRandom: vectors.Bytes(label+"board_random", 32), SessionKey: vectors.Bytes(label+"session_key", 32),
		XWingEncapsulationRandomness: vectors.Bytes(label+"xwing_encapsulation_randomness", 64),
		studentAt:                    studentAt, boardAt: boardAt, history: spec.history,
	}
	if !spec.history {
		in.Assignment, in.FileName, in.FileContent = vecAssignment, vecFileName, vecContent(st.sid)
		in.Terms = &vecTermsFields{Opens: vecTerms.Opens, Due: vecTerms.Due, Lock: vecTerms.Lock, Extended: vecTerms.Extended, MaxSize: vecTerms.MaxSize}
		in.ReceiptID, in.Received, in.ReceivedMS = vecReceiptID, vecReceivedTime.Format(receiptTime), uint64(vecReceivedTime.UnixMilli())
	}
	if _, ok := st.key.(*rsa.PrivateKey); ok {
		in.OAEPSeed = vectors.Bytes(label+"oaep_seed", 32)
	}
	return in
}

// boardRand and clientRand serve the randomness each side draws, in the
// order it draws it. (The board's last, RSA-OAEP's seed, is drawn by Go's
// rsa.EncryptOAEP, which may one day draw its own, as rsa.GenerateKey does
// since Go 1.26: the committed encrypted_key is pinned, and the step check
// makes it from the seed by RFC 8017.)
func (in sessionInputs) boardRand() *vectors.Script {
	s := &vectors.Script{Names: []string{"board_random", "session_key"}, Values: [][]byte{in.BoardRandom, in.SessionKey}}
	if in.OAEPSeed != nil {
		s.Names, s.Values = append(s.Names, "oaep_seed"), append(s.Values, in.OAEPSeed)
	}
	return s
}

func (in sessionInputs) clientRand() *vectors.Script {
	return &vectors.Script{Names: []string{"client_random"}, Values: [][]byte{in.ClientRandom}}
}

// pqOutcome records what the X-Wing encapsulation of a vector made.
type pqOutcome struct {
	mu     sync.Mutex
	ss     []byte
	ctx    *vectors.Context
	secret []byte
}

// serverConfig returns the board's config of a vector. pin, if set, is the
// committed encrypted_key, which replaces the board's.
func (in sessionInputs) serverConfig(f *vecFixture, pin []byte, pq *pqOutcome) *ServerConfig {
	status := f.status
	cfg := &ServerConfig{
		Certificate: f.board.cert, Key: vectors.Signer{Key: f.board.key}, Root: f.root,
		Status: func() []byte { return status }, Replays: NewReplayCache(0), AllowRC4: in.AllowRC4,
		Now: func() time.Time { return in.boardAt }, Rand: in.boardRand(),
	}
	// The encapsulation by the RFC, with the vector's randomness: the pq
	// secret comes from the vectors package's HPKE, the student's from
	// crypto/hpke's, and the session works only if they agree.
	cfg.testHookEncapsulate = func(pk hpke.PublicKey, helloHash [32]byte) ([]byte, []byte, error) {
		enc, ss, err := vectors.XWingEncapsulate(pk.Bytes(), in.XWingEncapsulationRandomness)
		if err != nil {
			return nil, nil, err
		}
		ctx, err := vectors.KeySchedule(vectors.KEMXWing, vectors.KDFSHA256, vectors.AEADExportOnly, ss, pqInfo(helloHash))
		if err != nil {
			return nil, nil, err
		}
		secret := ctx.Export([]byte(exporterPQ), pqSecretLen)
		pq.mu.Lock()
		pq.ss, pq.ctx, pq.secret = ss, ctx, bytes.Clone(secret)
		pq.mu.Unlock()
		return enc, secret, nil
	}
	if pin != nil {
		cfg.testHookServerHello = func(sh *wire.ServerHello) { sh.EncryptedKey = bytes.Clone(pin) }
	}
	return cfg
}

// clientConfig returns the student's config of a vector.
func (in sessionInputs) clientConfig(f *vecFixture) *ClientConfig {
	st := f.students[in.Student]
	seed := bytes.Clone(in.XWingSeed)
	return &ClientConfig{
		SID: st.sid, Certificate: st.cert, Key: vectors.Signer{Key: st.key}, Root: f.root, BoardName: in.BoardName,
		Suites: in.SuitesOffered, Now: func() time.Time { return in.studentAt }, Rand: in.clientRand(),
		testHookKEMKey: func() (hpke.PrivateKey, error) { return xwing.NewPrivateKey(seed) },
	}
}

// recordConn records what passes through a net.Conn: what is written (the
// student's frames) and what is read (the board's).
type recordConn struct {
	net.Conn
	mu          sync.Mutex
	wrote, read bytes.Buffer
}

func (c *recordConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.read.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *recordConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.wrote.Write(p[:n])
	c.mu.Unlock()
	return n, err
}

// boardSide runs the board's side of a vector's session on nc: the
// handshake, then the submission and the receipt, or the history of the
// receipts f's board holds.
func (in sessionInputs) boardSide(f *vecFixture, nc net.Conn, cfg *ServerConfig) (*Submission, error) {
	defer nc.Close()
	conn, err := Server(boardWire(nc), cfg)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	if in.history {
		items, err := vecHistoryItems(f)
		if err != nil {
			return nil, err
		}
		m, err := conn.ReadRequest()
		if err != nil {
			return nil, err
		}
		req, ok := m.(*wire.HistoryRequest)
		if !ok {
			return nil, fmt.Errorf("got a %v, want a HistoryRequest", m.Type())
		}
		_, err = conn.ServeHistory(req, &testCourse{history: items})
		return nil, err
	}
	sub, err := receiveSubmission(conn, &testCourse{terms: vecTerms}, &wire.Receiver{MaxSize: 1 << 20})
	if err != nil {
		return nil, err
	}
	return sub, conn.SendReceipt(&wire.Receipt{
		ID: in.ReceiptID, SID: conn.SID(), Serial: conn.PeerCertificate().SerialNumber.Bytes(),
		Assignment: sub.Terms.Assignment, Original: sub.Original, Name: sub.File.Name, Size: uint64(sub.File.Size),
		SHA256: sub.File.SHA256, Received: uint64(sub.Received.UnixMilli()), Due: sub.Terms.Due, Late: sub.Late(), Version: 1,
	})
}

// studentSide runs the student's side on nc: the handshake, then the
// submission, and returns the verified receipt and its file; or the
// history, and returns the receipt files of its receipts, each checked.
func (in sessionInputs) studentSide(nc net.Conn, cfg *ClientConfig) (*wire.Receipt, [][]byte, error) {
	defer nc.Close()
	conn, err := Client(studentWire(nc), cfg)
	if err != nil {
		return nil, nil, err
	}
	defer conn.Close()
	if in.history {
		entries, err := conn.History("")
		if err != nil {
			return nil, nil, err
		}
		var files [][]byte
		for i, e := range entries {
			if e.Err != nil {
				return nil, nil, fmt.Errorf("history item %d: %w", i, e.Err)
			}
			file, err := e.ReceiptFile()
			if err != nil {
				return nil, nil, err
			}
			files = append(files, file)
		}
		return nil, files, cfg.Rand.(*vectors.Script).Done()
	}
	r, _, err := conn.Submit(NewSubmitRequest(in.Assignment, in.FileName, int64(len(in.FileContent)), sha256.Sum256(in.FileContent)),
		bytes.NewReader(in.FileContent), SubmitOptions{})
	if err != nil {
		return nil, nil, err
	}
	if err := cfg.Rand.(*vectors.Script).Done(); err != nil {
		return nil, nil, err
	}
	file, err := MarshalReceiptFile(r, conn.PeerCertificate())
	return r, [][]byte{file}, err
}

// vecContent is the content a student of the vectors submits.
func vecContent(sid string) []byte {
	return fmt.Appendf(nil, "Assignment 1\nSID %s\n\nThe answer is 42.\n", sid)
}

// vecHistoryItems returns the receipts the history vector's board holds for
// its student, newest first: the receipt of the submission vector
// vecHistorySubmission (signed again here: the board's signatures are
// deterministic), and one of version 2, five minutes older, of a file
// submitted to a board before version 3.
func vecHistoryItems(f *vecFixture) ([]wire.HistoryItem, error) {
	var spec sessionSpec
	for _, s := range sessionSpecs {
		if s.name == vecHistorySubmission {
			spec = s
		}
	}
	st, board := f.students[spec.student], f.board
	signer := vectors.Signer{Key: board.key}
	boardSum := sha256.Sum256(board.cert.Raw)
	content := vecContent(st.sid)
	r3 := &wire.Receipt{ID: vecReceiptID, SID: st.sid, Serial: st.cert.SerialNumber.Bytes(), Assignment: vecAssignment,
		Original: vecFileName, Name: wire.SafeName(vecFileName, "report"), Size: uint64(len(content)), SHA256: sha256.Sum256(content),
		Received: uint64(vecReceivedTime.UnixMilli()), Due: vecTerms.Due, Late: LateBy(uint64(vecReceivedTime.UnixMilli()), vecTerms.Due),
		Version: 1, BoardCertSHA256: boardSum}
	msg, err := ReceiptSignedBytes(r3)
	if err != nil {
		return nil, err
	}
	if r3.Signature, err = keys.Sign(signer, nil, msg); err != nil {
		return nil, err
	}
	lab := []byte("Lab 1: done.\n")
	r2 := &wire.ReceiptV2{ID: vecV2ReceiptID, SID: st.sid, Serial: st.cert.SerialNumber.Bytes(), Name: vecV2FileName,
		Size: uint64(len(lab)), SHA256: sha256.Sum256(lab), Received: uint64(vecReceivedTime.Add(-vecV2Before).UnixMilli()),
		BoardCertSHA256: boardSum}
	if msg, err = ReceiptV2SignedBytes(r2); err != nil {
		return nil, err
	}
	if r2.Signature, err = keys.Sign(signer, nil, msg); err != nil {
		return nil, err
	}
	var items []wire.HistoryItem
	for _, it := range []struct {
		version uint16
		m       wire.Message
	}{{wire.ReceiptVersion3, r3}, {wire.ReceiptVersion2, r2}} {
		p, err := wire.Marshal(it.m)
		if err != nil {
			return nil, err
		}
		items = append(items, wire.HistoryItem{Version: it.version, Receipt: p[1:], Certificate: board.cert.Raw})
	}
	return items, nil
}

// makeSessionVector runs a vector's session, student and board together,
// and returns its file's content. pin, if set, is the committed
// encrypted_key.
func makeSessionVector(f *vecFixture, spec sessionSpec, pin []byte) (*sessionFile, error) {
	in := spec.inputs(f)
	pq := &pqOutcome{}
	scfg, ccfg := in.serverConfig(f, pin, pq), in.clientConfig(f)
	studentEnd, boardEnd := net.Pipe()
	rec := &recordConn{Conn: studentEnd}
	type boardOut struct {
		sub *Submission
		err error
	}
	done := make(chan boardOut, 1)
	go func() {
		sub, err := in.boardSide(f, boardEnd, scfg)
		done <- boardOut{sub, err}
	}()
	receipt, receiptFiles, cerr := in.studentSide(rec, ccfg)
	out := <-done
	if err := errors.Join(cerr, out.err); err != nil {
		return nil, err
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	c2s, err := splitFrames(rec.wrote.Bytes())
	if err != nil {
		return nil, err
	}
	s2c, err := splitFrames(rec.read.Bytes())
	if err != nil {
		return nil, err
	}
	// The records' directions in order of sending, after the handshake.
	order := "cscsccs" // SubmitRequest, Terms, FileHeader, FileOffset, Data, SubmitEnd, Receipt
	description := vecSessionDescription
	if in.history {
		order, description = "cs", vecHistoryDescription // HistoryRequest, History
	}
	if nc, ns := strings.Count(order, "c"), strings.Count(order, "s"); len(c2s) != 1+nc || len(s2c) != 2+ns {
		return nil, fmt.Errorf("the session has %d frames from the student and %d from the board, not %d and %d", len(c2s), len(s2c), 1+nc, 2+ns)
	}
	v := &sessionFile{Description: description, Inputs: in}
	pq.mu.Lock()
	defer pq.mu.Unlock()
	if err := v.handshake(f, c2s[0], s2c[0], s2c[1], pq); err != nil {
		return nil, err
	}
	if err := v.records(order, c2s[1:], s2c[2:]); err != nil {
		return nil, err
	}
	if in.history {
		return v, v.history(receiptFiles)
	}
	return v, v.submission(f, out.sub, receipt, receiptFiles[0])
}

// splitFrames splits a stream into frame payloads.
func splitFrames(stream []byte) ([][]byte, error) {
	var out [][]byte
	for len(stream) > 0 {
		if len(stream) < 4 {
			return nil, errors.New("a frame cut short")
		}
		n := int(binary.BigEndian.Uint32(stream))
		if len(stream) < 4+n {
			return nil, errors.New("a frame cut short")
		}
		out = append(out, stream[4:4+n])
		stream = stream[4+n:]
	}
	return out, nil
}

// pssSalt returns the salt of key's signature over msg, when key signs
// with RSA-PSS, else nil.
func pssSalt(key crypto.Signer, msg []byte) []byte {
	if _, ok := key.Public().(*ecdsa.PublicKey); ok {
		return nil
	}
	d := sha256.Sum256(msg)
	return vectors.PSSSalt(d[:], 32)
}

// handshake fills in the handshake's values and the key schedule.
func (v *sessionFile) handshake(f *vecFixture, ch, sh, sv []byte, pq *pqOutcome) error {
	in := &v.Inputs
	st := f.students[in.Student]
	hv := &v.Handshake
	m, err := wire.Unmarshal(ch)
	if err != nil {
		return err
	}
	hello := m.(*wire.ClientHello)
	prefix := wire.HelloPrefix(ch, hello)
	prefixSum := sha256.Sum256(prefix)
	hv.KEMPublicKey = hello.KEMPublic
	hv.HelloPrefixSHA256 = prefixSum[:]
	hv.HelloSignedBytes = wire.HelloSignedBytes(prefix)
	hv.HelloSignature = hello.Signature
	hv.HelloSignatureSalt = pssSalt(st.key, hv.HelloSignedBytes)
	hv.ClientHelloFrame = frame(ch)
	hHello := sha256.Sum256(hv.ClientHelloFrame)
	hv.HHello = hHello[:]

	if m, err = wire.Unmarshal(sh); err != nil {
		return err
	}
	server := m.(*wire.ServerHello)
	hv.Suite, hv.KeyTransport = server.Suite, server.KeyTransport
	hv.SessionKeyLabel = append([]byte(labelSessionKey), hHello[:]...)
	hv.EncryptedKey = server.EncryptedKey
	if kem := map[uint8]uint16{wire.KeyTransportHPKEP256: vectors.KEMP256, wire.KeyTransportHPKEP384: vectors.KEMP384}[server.KeyTransport]; kem != 0 {
		dk, err := st.key.(*ecdsa.PrivateKey).ECDH()
		if err != nil {
			return err
		}
		n := len(dk.PublicKey().Bytes())
		h := &sessionHPKE{Enc: server.EncryptedKey[:n], Ciphertext: server.EncryptedKey[n:]}
		if h.SharedSecret, err = vectors.DHKEMDecap(kem, dk, h.Enc); err != nil {
			return err
		}
		ctx, err := vectors.KeySchedule(kem, hpkeKDF.ID(), hpkeAEAD.ID(), h.SharedSecret, hv.SessionKeyLabel)
		if err != nil {
			return err
		}
		h.Key, h.BaseNonce = ctx.Key, ctx.BaseNonce
		hv.HPKE = h
	}
	hv.KEMInfo = pqInfo(hHello)
	hv.KEMCiphertext = server.KEMCiphertext
	hv.KEMSharedSecret, hv.KEMExporterSecret, hv.PQSecret = pq.ss, pq.ctx.ExporterSecret, pq.secret
	hv.ServerHelloFrame = frame(sh)
	pair := sha256.Sum256(append(bytes.Clone(hv.ClientHelloFrame), hv.ServerHelloFrame...))
	hv.ServerVerifySignedBytes = signedMessage(contextServerVerify, pair[:])

	if m, err = wire.Unmarshal(sv); err != nil {
		return err
	}
	hv.ServerVerifySignature = m.(*wire.ServerVerify).Signature
	hv.ServerVerifyFrame = frame(sv)
	th := sha256.Sum256(append(append(bytes.Clone(hv.ClientHelloFrame), hv.ServerHelloFrame...), hv.ServerVerifyFrame...))
	hv.TH = th[:]

	// The key schedule.
	ikm := append(bytes.Clone(in.SessionKey), hv.PQSecret...)
	prk, err := hkdf.Extract(sha256.New, ikm, append(bytes.Clone(in.ClientRandom), in.BoardRandom...))
	if err != nil {
		return err
	}
	c2s, s2c, err := deriveKeys(in.SessionKey, hv.PQSecret, hello.Random, server.Random, th)
	if err != nil {
		return err
	}
	v.Keys = sessionKeys{PRK: prk, C2SKey: c2s.key[:], C2SMAC: c2s.mac[:], C2SIV: c2s.iv[:],
		S2CKey: s2c.key[:], S2CMAC: s2c.mac[:], S2CIV: s2c.iv[:]}
	return nil
}

// records fills in the records, opened with the key schedule's keys, in
// the order they are sent, whose directions order gives ('c' the student's,
// 's' the board's).
func (v *sessionFile) records(order string, c2s, s2c [][]byte) error {
	open := func(dir string, frames [][]byte, key, mac, iv []byte) ([]vecRecord, error) {
		k := trafficKeys{}
		copy(k.key[:], key)
		copy(k.mac[:], mac)
		copy(k.iv[:], iv)
		h, err := newHalfConn(v.Handshake.Suite, &k)
		if err != nil {
			return nil, err
		}
		var out []vecRecord
		offset := uint64(0)
		for seq, p := range frames {
			plain, err := h.openInPlace(bytes.Clone(p))
			if err != nil {
				return nil, fmt.Errorf("%s record %d: %w", dir, seq, err)
			}
			n := len(p) - h.overhead()
			rec := vecRecord{Direction: dir, Seq: uint64(seq), Type: p[0],
				Plaintext: plain[1:], Ciphertext: p[1:n], Tag: p[n:], Frame: frame(p)}
			if h.aead != nil {
				rec.Nonce, rec.AAD = bytes.Clone(h.nonce[:]), bytes.Clone(h.aad[:])
			} else {
				off := offset
				rec.KeystreamOffset = &off
			}
			out = append(out, rec)
			offset += uint64(n - 1)
		}
		return out, nil
	}
	k := v.Keys
	in, err := open("c2s", c2s, k.C2SKey, k.C2SMAC, k.C2SIV)
	if err != nil {
		return err
	}
	out, err := open("s2c", s2c, k.S2CKey, k.S2CMAC, k.S2CIV)
	if err != nil {
		return err
	}
	for _, d := range order {
		if d == 'c' {
			v.Records, in = append(v.Records, in[0]), in[1:]
		} else {
			v.Records, out = append(v.Records, out[0]), out[1:]
		}
	}
	return nil
}

// submission fills in the evidence: the statement and its signature as the
// board received them, the receipt as the student verified it.
func (v *sessionFile) submission(f *vecFixture, sub *Submission, r *wire.Receipt, file []byte) error {
	st := f.students[v.Inputs.Student]
	signed, err := ReceiptSignedBytes(r)
	if err != nil {
		return err
	}
	v.Submission = &vecSubmission{
		Name: sub.File.Name, Size: uint64(sub.File.Size), SHA256: sub.File.SHA256[:], TermsBody: sub.TermsBody,
		Statement: sub.Statement, Signature: sub.Signature, SignatureSalt: pssSalt(st.key, sub.Statement),
		Receipt:            vecReceiptOf(r),
		ReceiptSignedBytes: signed,
		ReceiptFile:        string(file),
	}
	return nil
}

// vecReceiptOf returns the fields of a receipt of version 3.
func vecReceiptOf(r *wire.Receipt) vecReceipt {
	return vecReceipt{ID: r.ID, SID: r.SID, Serial: r.Serial, Assignment: r.Assignment, Original: r.Original, Name: r.Name,
		Size: r.Size, SHA256: r.SHA256[:], Received: r.Received, Due: r.Due, Late: r.Late, Version: r.Version,
		BoardCertSHA256: r.BoardCertSHA256[:], Signature: r.Signature}
}

// history fills in the history's receipts from its History record, each
// with the receipt file the student wrote of it.
func (v *sessionFile) history(files [][]byte) error {
	rec := v.Records[len(v.Records)-1]
	var h wire.History
	if err := wire.UnmarshalBodyOf(&h, rec.Plaintext); err != nil {
		return err
	}
	var req wire.HistoryRequest
	if err := wire.UnmarshalBodyOf(&req, v.Records[0].Plaintext); err != nil {
		return err
	}
	if len(files) != len(h.Items) {
		return fmt.Errorf("%d receipt files for %d receipts", len(files), len(h.Items))
	}
	v.History = &vecHistory{Assignment: req.Assignment}
	for i, it := range h.Items {
		item := vecHistoryItem{Version: it.Version, Body: it.Receipt, ReceiptFile: string(files[i])}
		var err error
		switch it.Version {
		case wire.ReceiptVersion3:
			var r wire.Receipt
			if err := wire.UnmarshalBodyOf(&r, it.Receipt); err != nil {
				return err
			}
			item.Receipt = vecReceiptOf(&r)
			item.SignedBytes, err = ReceiptSignedBytes(&r)
		default:
			var r wire.ReceiptV2
			if err := wire.UnmarshalBodyOf(&r, it.Receipt); err != nil {
				return err
			}
			item.Receipt = vecReceipt{ID: r.ID, SID: r.SID, Serial: r.Serial, Name: r.Name, Size: r.Size, SHA256: r.SHA256[:],
				Received: r.Received, BoardCertSHA256: r.BoardCertSHA256[:], Signature: r.Signature}
			item.SignedBytes, err = ReceiptV2SignedBytes(&r)
		}
		if err != nil {
			return err
		}
		v.History.Items = append(v.History.Items, item)
	}
	return nil
}

// TestVectorsSession makes the session vectors again and compares them with
// the committed files, byte for byte (-update rewrites the files), then
// checks each value of the committed files from the values before it, as a
// reader of the appendix would.
func TestVectorsSession(t *testing.T) {
	f := loadVecFixture(t)
	for _, spec := range sessionSpecs {
		t.Run(spec.name, func(t *testing.T) {
			cryptotest.SetGlobalRandom(t, 1)
			var pin []byte
			if !*update {
				var committed sessionFile
				vectors.Load(t, spec.file(), &committed)
				pin = committed.Handshake.EncryptedKey
			}
			v, err := makeSessionVector(f, spec, pin)
			if err != nil {
				t.Fatal(err)
			}
			data, err := vectors.Marshal(v)
			if err != nil {
				t.Fatal(err)
			}
			vectors.Check(t, spec.file(), data, *update)
			if *update || t.Failed() {
				return
			}
			if err := checkSessionSteps(vectors.Read(t, "pki.json"), vectors.Read(t, "board-status.json"), vectors.Read(t, spec.file())); err != nil {
				t.Error(err)
			}
		})
	}
	// The history lists the submission vector's receipt, and the student
	// recovers from it the very receipt file she saved at submission.
	if *update {
		return
	}
	var sub, hist sessionFile
	vectors.Load(t, "session-"+vecHistorySubmission+".json", &sub)
	vectors.Load(t, "session-p256-history.json", &hist)
	if hist.History == nil || len(hist.History.Items) == 0 || sub.Submission == nil ||
		hist.History.Items[0].ReceiptFile != sub.Submission.ReceiptFile {
		t.Errorf("the history's first receipt file is not the one session-%s.json's student saved", vecHistorySubmission)
	}
}

// vecFrame is one frame of a vector's session.
type vecFrame struct {
	c2s   bool // sent by the student
	name  string
	frame []byte
}

// frames returns the frames of the session in the order they are sent.
func (v *sessionFile) frames() []vecFrame {
	h := v.Handshake
	out := []vecFrame{
		{true, "client_hello_frame", h.ClientHelloFrame},
		{false, "server_hello_frame", h.ServerHelloFrame},
		{false, "server_verify_frame", h.ServerVerifyFrame},
	}
	for i, r := range v.Records {
		out = append(out, vecFrame{r.Direction == "c2s", fmt.Sprintf("records[%d].frame", i), r.Frame})
	}
	return out
}

// playPeer plays one side of a vector's session on nc from the committed
// frames: it sends its side's frames, and reads the other side's, which
// must be the committed ones, byte for byte.
func playPeer(nc net.Conn, frames []vecFrame, asStudent bool) error {
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(testTimeout))
	for _, f := range frames {
		if f.c2s == asStudent {
			if _, err := nc.Write(f.frame); err != nil {
				return fmt.Errorf("sending %s: %w", f.name, err)
			}
			continue
		}
		p, err := wire.ReadFrame(nc, 1<<20, nil)
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", f.name, err)
		}
		if got := frame(p); !bytes.Equal(got, f.frame) {
			return fmt.Errorf("%s: the state machine sent another frame than the vector's (%d bytes, the vector's %d)", f.name, len(got), len(f.frame))
		}
	}
	return nil
}

// TestVectorsBoardAcceptsCommitted plays the student from the committed
// frames of each session vector against the board's state machine: the
// board must accept the committed ClientHello and records, answer the
// committed ServerHello, ServerVerify and records, and take the committed
// statement and signature as the submission's evidence.
func TestVectorsBoardAcceptsCommitted(t *testing.T) {
	f := loadVecFixture(t)
	for _, spec := range sessionSpecs {
		t.Run(spec.name, func(t *testing.T) {
			cryptotest.SetGlobalRandom(t, 1)
			var committed sessionFile
			vectors.Load(t, spec.file(), &committed)
			in := spec.inputs(f)
			cfg := in.serverConfig(f, committed.Handshake.EncryptedKey, &pqOutcome{})
			student, board := net.Pipe()
			type boardOut struct {
				sub *Submission
				err error
			}
			done := make(chan boardOut, 1)
			go func() {
				sub, err := in.boardSide(f, board, cfg)
				done <- boardOut{sub, err}
			}()
			perr := playPeer(student, committed.frames(), true)
			out := <-done
			if err := errors.Join(perr, out.err); err != nil {
				t.Fatal(err)
			}
			s := committed.Submission
			if s == nil {
				return // a history: the board answered the committed History
			}
			if !bytes.Equal(out.sub.Statement, s.Statement) || !bytes.Equal(out.sub.Signature, s.Signature) ||
				!bytes.Equal(out.sub.TranscriptHash[:], committed.Handshake.TH) {
				t.Error("the board's evidence (statement, signature, TH) is not the vector's")
			}
		})
	}
}

// TestVectorsStudentAcceptsCommitted plays the board from the committed
// frames of each session vector against the student's state machine: the
// student must send the committed ClientHello and records, accept the
// committed ServerHello, ServerVerify and Receipt, and save the committed
// receipt file.
func TestVectorsStudentAcceptsCommitted(t *testing.T) {
	f := loadVecFixture(t)
	for _, spec := range sessionSpecs {
		t.Run(spec.name, func(t *testing.T) {
			cryptotest.SetGlobalRandom(t, 1)
			var committed sessionFile
			vectors.Load(t, spec.file(), &committed)
			in := spec.inputs(f)
			student, board := net.Pipe()
			type studentOut struct {
				files [][]byte
				err   error
			}
			done := make(chan studentOut, 1)
			go func() {
				_, files, err := in.studentSide(student, in.clientConfig(f))
				done <- studentOut{files, err}
			}()
			perr := playPeer(board, committed.frames(), false)
			out := <-done
			if err := errors.Join(perr, out.err); err != nil {
				t.Fatal(err)
			}
			var want []string
			if committed.Submission != nil {
				want = append(want, committed.Submission.ReceiptFile)
			} else {
				for _, it := range committed.History.Items {
					want = append(want, it.ReceiptFile)
				}
			}
			if len(out.files) != len(want) {
				t.Fatalf("the student wrote %d receipt files, the vector has %d", len(out.files), len(want))
			}
			for i, file := range out.files {
				if string(file) != want[i] {
					t.Errorf("the student saved another receipt file than the vector's:\n%s", file)
				}
			}
		})
	}
}

// TestVectorsSessionEveryValueCounts changes each value of each committed
// session vector, one at a time, and checks that the check of
// TestVectorsSession refuses the changed file — the comparison with what
// the code makes, with a changed encrypted_key pinned in its place — and
// that the reader's step-by-step check (checkSessionSteps) refuses it too,
// but for the two values that change no byte of the session.
func TestVectorsSessionEveryValueCounts(t *testing.T) {
	f := loadVecFixture(t)
	pki, status := vectors.Read(t, "pki.json"), vectors.Read(t, "board-status.json")
	for _, spec := range sessionSpecs {
		t.Run(spec.name, func(t *testing.T) {
			cryptotest.SetGlobalRandom(t, 1)
			committed := vectors.Read(t, spec.file())
			var c sessionFile
			if err := vectors.Decode(committed, &c); err != nil {
				t.Fatal(err)
			}
			made := func(pin []byte) ([]byte, error) {
				v, err := makeSessionVector(f, spec, pin)
				if err != nil {
					return nil, err
				}
				return vectors.Marshal(v)
			}
			got, err := made(c.Handshake.EncryptedKey)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := vectors.Mutations(committed)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				want := got
				if m.Path == "handshake.encrypted_key" {
					var mv sessionFile
					if err := vectors.Decode(m.Data, &mv); err != nil {
						t.Fatal(err)
					}
					if want, err = made(mv.Handshake.EncryptedKey); err != nil {
						want = nil // refused: the key transport fails
					}
				}
				if want != nil && vectors.Compare(spec.file(), want, m.Data) == nil {
					t.Errorf("a change of %s passes the comparison", m.Path)
				}
				// The description changes no byte, nor does whether the board
				// allows RC4 when the student prefers AES.
				unexamined := m.Path == "description" ||
					m.Path == "inputs.board_allows_rc4" && c.Inputs.SuitesOffered[0] != SuiteRC4HMACSHA256
				if checkSessionSteps(pki, status, m.Data) == nil && !unexamined {
					t.Errorf("the step check passes a change of %s", m.Path)
				}
			}
			t.Logf("%d values, each change refused by the comparison and by the step check", len(ms))
		})
	}
}
