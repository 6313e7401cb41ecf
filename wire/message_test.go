package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// sampleMessages holds one value of each message type of PROTOCOL.md §2–5. Their
// encodings are kept in testdata/golden/<name>.hex.
func sampleMessages() []Message {
	return []Message{
		&Error{Code: CodeBadFileName, Text: `bad file name "../x": begins with '.'`},
		&FileHeader{Name: "report.pdf", Size: 1234567, SHA256: sha256.Sum256([]byte("report"))},
		&FileOffset{Offset: 8 << 20},
		&Data{Bytes: []byte("file bytes")},
		&FileAck{},
		&EnrollRequest{
			Version: ProtocolVersion, Profile: ProfileStudent, SID: "1155000001", CSR: []byte("csr der"),
			Root: [RootFingerprintLen]byte{0xaa, 0xbb}, Auth: AuthToken,
			TokenKey: bytes.Repeat([]byte{0x11}, TokenKeyLen), Signature: bytes.Repeat([]byte{0x22}, TokenSignatureLen),
		},
		&EnrollAccepted{Serial: []byte{0x7f, 1, 2, 3}, NotAfter: 1800000000, Certificate: []byte("certificate der"), Root: []byte("root der")},
		&Fetch{Version: ProtocolVersion, Name: "crl.pem"},
		&WatchRequest{Version: ProtocolVersion, Certificate: []byte("board der")},
		&WatchChallenge{Nonce: [NonceLen]byte{9, 8, 7}},
		&WatchProof{Signature: []byte("board signature over the nonce")},
		&StatusUpdate{CRL: []byte("crl der"), Status: []byte("board status")},
		&StatusAck{CRLNumber: 42},
		&ClientHello{
			Version: ProtocolVersion, SID: "1155000001",
			Certificate: []byte("leaf der"),
			Random:      [RandomLen]byte{1, 2, 3},
			Time:        1800000000123,
			Suites:      []uint16{0x0001, 0x0002}, // session.SuiteAES256CTRHMACSHA256, session.SuiteRC4HMACSHA256
			KEM:         KEMXWing, KEMPublic: []byte("x-wing public key"),
			Signature: []byte("student signature over the hello"),
		},
		&ServerHello{
			Version: ProtocolVersion, Random: [RandomLen]byte{4, 5, 6}, Suite: 0x0001,
			KeyTransport: KeyTransportHPKEP256, EncryptedKey: []byte("enc||ct"), KEMCiphertext: []byte("x-wing enc"),
			Certificate: []byte("board der"), Status: []byte("board status"),
		},
		&ServerVerify{Signature: []byte("board signature")},
		&SubmitEnd{Signature: []byte("student signature")},
		&Receipt{
			ID: "000001", SID: "1155000001", Serial: []byte{0x42}, Assignment: "hw1", Original: "Résumé.txt",
			Name: "R__sum__.txt", Size: 290, SHA256: sha256.Sum256([]byte("content")), Received: 1800000000123,
			Due: 1800000000000, Late: 123, Version: 2,
			BoardCertSHA256: sha256.Sum256([]byte("board der")),
			Signature:       []byte("receipt signature"),
		},
		&SubmitRequest{Assignment: "hw1", Original: "Résumé.txt", Name: "R__sum__.txt", Size: 290,
			SHA256: sha256.Sum256([]byte("content"))},
		withRaw(&Terms{Assignment: "hw1", Opens: 1799000000000, Due: 1800000000000, Lock: 1800086400000, Extended: true, MaxSize: 10 << 20}),
		&HistoryRequest{Assignment: "hw1"},
		&History{More: true, Items: []HistoryItem{
			{Version: ReceiptVersion3, Receipt: []byte("v3 receipt body"), Certificate: []byte("board der")},
			{Version: ReceiptVersion2, Receipt: []byte("v2 receipt body"), Certificate: []byte("old board der")},
		}},
		&AssignmentsRequest{},
		&Assignments{Items: []AssignmentItem{
			{ID: "hw1", Title: "Homework 1", Opens: 1799000000000, Due: 1800000000000, Lock: 1800086400000,
				MaxSize: 10 << 20, Patterns: "*.pdf,*.zip", Versions: 2, Active: 2},
			{ID: "lab", MaxSize: 1 << 30},
		}},
	}
}

// withRaw returns terms with Raw set as a receiver sets it: the body.
func withRaw(terms *Terms) *Terms {
	terms.Raw = mustMarshal(terms)[1:]
	return terms
}

func TestMessageGolden(t *testing.T) {
	for _, m := range sampleMessages() {
		name := m.Type().String()
		t.Run(name, func(t *testing.T) {
			got, err := Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", "golden", name+".hex")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(hex.EncodeToString(got)+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			want, err := hex.DecodeString(strings.TrimSpace(string(text)))
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got  %x\nwant %x (%s)", got, want, path)
			}
		})
	}
}

func TestMessageRoundTrip(t *testing.T) {
	msgs := append(sampleMessages(),
		&Error{Code: 0xffff},
		&Error{Code: CodeInternal, Text: strings.Repeat("é", MaxErrorText/2)},
		&FileHeader{Name: "", Size: 1<<64 - 1},
		&Data{Bytes: make([]byte, MaxDataChunk)},
		&Data{Bytes: []byte{0}},
	)
	for _, m := range msgs {
		t.Run(m.Type().String(), func(t *testing.T) {
			enc, err := Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Unmarshal(enc)
			if err != nil {
				t.Fatalf("Unmarshal(%x): %v", enc, err)
			}
			if terms, ok := got.(*Terms); ok && !bytes.Equal(terms.Raw, enc[1:]) {
				// The received terms keep their body, which the statement signs.
				t.Errorf("Terms.Raw = %x, want the body %x", terms.Raw, enc[1:])
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("got %#v, want %#v", got, m)
			}
		})
	}
	// A body of every field kind, through the same Builder and Parser.
	for _, m := range []*allFields{
		{},
		{A: 1, B: 2, C: 3, D: 4, E: [3]byte{5, 6, 7}, F: []byte{8}, G: []byte{9}, H: []byte{10}, I: "k", J: "l"},
	} {
		t.Run("allFields", func(t *testing.T) {
			enc, err := Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := unmarshalAllFields(enc)
			if err != nil {
				t.Fatalf("decoding %x: %v", enc, err)
			}
			if !reflect.DeepEqual(got, m) {
				t.Errorf("got %#v, want %#v", got, m)
			}
		})
	}
}

func TestUnmarshalTruncatedAtEveryOffset(t *testing.T) {
	for _, m := range sampleMessages() {
		if m.Type() == TypeData {
			continue // any non-empty prefix of a Data body is a valid Data
		}
		enc, _ := Marshal(m)
		t.Run(m.Type().String(), func(t *testing.T) {
			for k := 0; k < len(enc); k++ {
				_, err := Unmarshal(enc[:k])
				if !isRefusal(err, CodeMalformed) {
					t.Errorf("cut after %d of %d bytes: got %v, want a malformed refusal", k, len(enc), err)
				}
				if k == 0 && (err == nil || err.Error() != "malformed: empty frame (a message needs at least its type byte)") {
					t.Errorf("empty payload: got %v, want the empty-frame refusal", err)
				}
			}
		})
	}
	t.Run("Data", func(t *testing.T) {
		_, err := Unmarshal([]byte{byte(TypeData)})
		if !isRefusal(err, CodeMalformed) {
			t.Errorf("Data with no bytes: got %v, want a malformed refusal", err)
		}
	})
}

func TestUnmarshalTrailingBytes(t *testing.T) {
	for _, m := range sampleMessages() {
		if m.Type() == TypeData {
			continue // the rest of the frame is the Data
		}
		enc, _ := Marshal(m)
		t.Run(m.Type().String(), func(t *testing.T) {
			_, err := Unmarshal(append(enc, 0))
			if !isRefusal(err, CodeMalformed) || !strings.Contains(err.Error(), "1 trailing bytes") {
				t.Errorf("got %v, want a malformed error for 1 trailing byte", err)
			}
		})
	}
}

func TestUnmarshalStrict(t *testing.T) {
	header := func(name string) []byte {
		b := []byte{byte(TypeFileHeader), byte(len(name))}
		b = append(b, name...)
		return append(b, make([]byte, 8+32)...)
	}
	errorMsg := func(text string) []byte {
		b := []byte{byte(TypeError), 0, 1, byte(len(text) >> 8), byte(len(text))}
		return append(b, text...)
	}
	for _, tc := range []struct {
		name    string
		payload []byte
		want    Code   // 0: decodes
		msg     string // exact error message, if not empty
	}{
		{"empty", nil, CodeMalformed, "malformed: empty frame (a message needs at least its type byte)"},
		{"unknown type", []byte{0x99, 1, 2}, CodeUnknownMessage, "unknown-message: unknown message type 0x99"},
		{"type 0", []byte{0x00}, CodeUnknownMessage, ""},
		{"Error text bad UTF-8", errorMsg("a\xffb"), CodeMalformed, "malformed: Error: string ending at offset 7 is not valid UTF-8"},
		{"Error text of 1024 bytes", errorMsg(strings.Repeat("x", 1024)), 0, ""},
		{"Error text of 1025 bytes", errorMsg(strings.Repeat("x", 1025)), CodeMalformed, "malformed: Error: text of 1025 bytes exceeds 1024"},
		{"FileHeader name bad UTF-8", header("\xc0\xaf"), CodeMalformed, ""},
		{"FileHeader bad name decodes", header("../../etc/passwd"), 0, ""},
		{"FileHeader short sha256", header("x")[:2+1+8+31], CodeMalformed, "malformed: FileHeader: truncated fixed[32] at offset 10 (needs 32 bytes, 31 left)"},
		{"FileOffset short", []byte{byte(TypeFileOffset), 1, 2, 3}, CodeMalformed, "malformed: FileOffset: truncated u64 at offset 0 (needs 8 bytes, 3 left)"},
		{"Data empty", []byte{byte(TypeData)}, CodeMalformed, "malformed: Data: Data of 0 bytes is outside 1..65536"},
		{"Data of MaxDataChunk", append([]byte{byte(TypeData)}, make([]byte, MaxDataChunk)...), 0, ""},
		{"Data over MaxDataChunk", append([]byte{byte(TypeData)}, make([]byte, MaxDataChunk+1)...), CodeMalformed, ""},
		{"FileAck with body", []byte{byte(TypeFileAck), 0}, CodeMalformed, "malformed: FileAck: 1 trailing bytes after the last field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Unmarshal(tc.payload)
			if tc.want == 0 {
				if err != nil {
					t.Fatalf("got %v, want no error", err)
				}
				return
			}
			if !isRefusal(err, tc.want) {
				t.Fatalf("got %v, want a refusal with code %v", err, tc.want)
			}
			if m != nil {
				t.Errorf("got message %#v with the error, want nil", m)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("got message %q, want %q", err, tc.msg)
			}
		})
	}
}

func TestUnmarshalUnknownType(t *testing.T) {
	_, err := Unmarshal([]byte{0x99})
	var ute *Refusal
	if !errors.As(err, &ute) || ute.Text != "unknown message type 0x99" {
		t.Fatalf("got %v, want a refusal of the unknown type 0x99", err)
	}
	if got := CodeOf(err); got != CodeUnknownMessage {
		t.Errorf("CodeOf: got %v, want %v", got, CodeUnknownMessage)
	}
}

func TestDataAliasesPayload(t *testing.T) {
	payload := []byte{byte(TypeData), 'a', 'b'}
	m, err := Unmarshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	payload[1] = 'X'
	if got := string(m.(*Data).Bytes); got != "Xb" {
		t.Errorf("got %q after changing the payload, want \"Xb\": Data aliases its frame", got)
	}
}

func TestTypeString(t *testing.T) {
	for _, tc := range []struct {
		t    Type
		want string
	}{
		{TypeError, "Error"},
		{TypeFileHeader, "FileHeader"},
		{TypeFileOffset, "FileOffset"},
		{TypeData, "Data"},
		{TypeFileAck, "FileAck"},
		{0x99, "Type(0x99)"},
		{0x00, "Type(0x00)"},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("Type(%#x).String(): got %q, want %q", uint8(tc.t), got, tc.want)
		}
	}
}

// TestMessageTable checks the table Unmarshal decodes with: each entry makes a
// message of its own type, under a name no other entry has, and a type byte
// outside the table is no message.
func TestMessageTable(t *testing.T) {
	names := map[string]Type{}
	n := 0
	for i, info := range messages {
		if (info.name == "") != (info.newMsg == nil) {
			t.Errorf("type 0x%02x: name %q with constructor %v: want both or neither", i, info.name, info.newMsg != nil)
			continue
		}
		if info.newMsg == nil {
			if got, want := Type(i).String(), fmt.Sprintf("Type(0x%02x)", i); got != want {
				t.Errorf("Type(0x%02x).String(): got %q, want %q", i, got, want)
			}
			continue
		}
		n++
		if got := info.newMsg().Type(); got != Type(i) {
			t.Errorf("%s: the constructor makes a message of type 0x%02x, want 0x%02x", info.name, uint8(got), i)
		}
		if other, dup := names[info.name]; dup {
			t.Errorf("types 0x%02x and 0x%02x are both called %s", uint8(other), i, info.name)
		}
		names[info.name] = Type(i)
	}
	if want := len(sampleMessages()) + 2; n != want { // the samples and the two admin messages
		t.Errorf("the table has %d messages, want %d", n, want)
	}
	if _, err := Unmarshal([]byte{0x98}); !isRefusal(err, CodeUnknownMessage) {
		t.Errorf("type 0x98: got %v, want an unknown type", err)
	}
}

func TestExpect(t *testing.T) {
	t.Run("match", func(t *testing.T) {
		q := &msgQueue{in: []Message{&FileOffset{Offset: 7}}}
		got, err := Expect[*FileOffset](q.ReadMessage())
		if err != nil || got.Offset != 7 {
			t.Fatalf("got %v, %v, want offset 7", got, err)
		}
	})
	t.Run("peer error", func(t *testing.T) {
		q := &msgQueue{in: []Message{&Error{Code: CodeBusy, Text: "later"}}}
		_, err := Expect[*FileOffset](q.ReadMessage())
		var pe *Error
		if !errors.As(err, &pe) || pe.Code != CodeBusy {
			t.Fatalf("got %v, want the peer's *Error with code busy", err)
		}
		if got := CodeOf(err); got != CodeBusy {
			t.Errorf("CodeOf: got %v, want the peer's code %v", got, CodeBusy)
		}
	})
	t.Run("expect Error", func(t *testing.T) {
		q := &msgQueue{in: []Message{&Error{Code: CodeBusy}}}
		got, err := Expect[*Error](q.ReadMessage())
		if err != nil || got.Code != CodeBusy {
			t.Fatalf("got %v, %v, want the Error as a message", got, err)
		}
	})
	t.Run("unexpected", func(t *testing.T) {
		q := &msgQueue{in: []Message{&FileAck{}}}
		_, err := Expect[*FileOffset](q.ReadMessage())
		var ue *Refusal
		if !errors.As(err, &ue) || ue.Code != CodeUnexpectedMessage {
			t.Fatalf("got %v, want an unexpected-message refusal", err)
		}
		if want := "unexpected-message: got a FileAck message where a FileOffset was expected"; err.Error() != want {
			t.Errorf("got %q, want %q", err, want)
		}
	})
	t.Run("read error", func(t *testing.T) {
		q := &msgQueue{}
		_, err := Expect[*FileOffset](q.ReadMessage())
		if err != errEndOfQueue {
			t.Fatalf("got %v, want the read error", err)
		}
	})
	t.Run("decoding error", func(t *testing.T) {
		_, err := Expect[*FileOffset](Unmarshal([]byte{0x99}))
		if !isRefusal(err, CodeUnknownMessage) {
			t.Fatalf("got %v, want Unmarshal's refusal", err)
		}
	})
}

func TestConnMessages(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			a, b := tr.pair(t)
			ca, cb := NewConn(a, Options{MaxFrame: MaxDataChunk + 1, ReadTimeout: 10e9, WriteTimeout: 10e9}),
				NewConn(b, Options{MaxFrame: MaxDataChunk + 1, ReadTimeout: 10e9, WriteTimeout: 10e9})
			msgs := append(sampleMessages(), &Data{Bytes: payload(MaxDataChunk)}, &Data{Bytes: payload(smallFrame + 1)})
			go func() {
				for _, m := range msgs {
					if err := ca.WriteMessage(m); err != nil {
						t.Errorf("WriteMessage(%v): %v", m.Type(), err)
						return
					}
				}
				Answer(ca, Refusef(CodeTimeout, "too slow after %d ms", 30000))
			}()
			for _, want := range msgs {
				got, err := cb.ReadMessage()
				if err != nil {
					t.Fatalf("ReadMessage: %v", err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("got %v message %.60v, want %.60v", got.Type(), got, want)
				}
			}
			_, err := Expect[*FileAck](cb.ReadMessage())
			var pe *Error
			if !errors.As(err, &pe) || pe.Code != CodeTimeout || pe.Text != "too slow after 30000 ms" {
				t.Fatalf("got %v, want the Error sent with Answer", err)
			}
		})
	}
}

func TestConnWriteMessageRefusesBadData(t *testing.T) {
	a, _ := pipePair(t)
	c := NewConn(a, guardOptions)
	for _, d := range []*Data{{}, {Bytes: make([]byte, MaxDataChunk+1)}} {
		want := fmt.Sprintf("wire: encoding Data: Data of %d bytes is outside 1..%d", len(d.Bytes), MaxDataChunk)
		if err := c.WriteMessage(d); err == nil || err.Error() != want || CodeOf(err) != CodeInternal {
			t.Errorf("Data of %d bytes: got %v, want the plain encoding error %q", len(d.Bytes), err, want)
		}
	}
}
