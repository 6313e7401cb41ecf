package wire

import (
	"bytes"
	"crypto/sha256"
	"reflect"
	"strings"
	"testing"

	"pkiboard/internal/fuzzseed"
)

// TestCourseMessageLimits checks the value limits of the messages of
// PROTOCOL.md §5.4: each case breaks one and must be malformed.
func TestCourseMessageLimits(t *testing.T) {
	sum := sha256.Sum256([]byte("x"))
	terms := mustMarshal(&Terms{Assignment: "hw1", MaxSize: 1})
	badFlag := append([]byte(nil), terms...)
	badFlag[1+1+3+24] = 2 // extended
	history := mustMarshal(&History{Items: []HistoryItem{{Version: 3, Receipt: []byte{1}, Certificate: []byte{2}}}})
	badVersion := append([]byte(nil), history...)
	badVersion[4] = 4 // the item's version: 0x0004
	badMore := append([]byte(nil), history...)
	badMore[1] = 2
	for name, enc := range map[string][]byte{
		"submit-empty-assignment": mustMarshal(&SubmitRequest{Original: "a", Name: "a", SHA256: sum}),
		"submit-long-assignment":  mustMarshal(&SubmitRequest{Assignment: strings.Repeat("a", MaxAssignmentIDLen+1), Original: "a", Name: "a"}),
		"submit-empty-original":   mustMarshal(&SubmitRequest{Assignment: "a", Name: "a"}),
		"submit-long-original":    mustMarshal(&SubmitRequest{Assignment: "a", Original: strings.Repeat("o", MaxOriginalLen+1), Name: "a"}),
		"terms-empty-assignment":  mustMarshal(&Terms{}),
		"terms-extended-2":        badFlag,
		"history-long-assignment": mustMarshal(&HistoryRequest{Assignment: strings.Repeat("a", MaxAssignmentIDLen+1)}),
		"history-version-4":       badVersion,
		"history-more-2":          badMore,
		"history-empty-receipt":   mustMarshal(&History{Items: []HistoryItem{{Version: 3, Certificate: []byte{2}}}}),
		"history-empty-cert":      mustMarshal(&History{Items: []HistoryItem{{Version: 2, Receipt: []byte{1}}}}),
		"assignments-empty-id":    mustMarshal(&Assignments{Items: []AssignmentItem{{}}}),
		"assignments-long-title":  mustMarshal(&Assignments{Items: []AssignmentItem{{ID: "a", Title: strings.Repeat("t", MaxTitleLen+1)}}}),
		"assignments-long-pats":   mustMarshal(&Assignments{Items: []AssignmentItem{{ID: "a", Patterns: strings.Repeat("p", MaxPatternsLen+1)}}}),
		"assignments-request-1":   {byte(TypeAssignmentsRequest), 0},
		"receipt-no-assignment":   mustMarshal(&Receipt{ID: "1", SID: "s", Serial: []byte{1}, Original: "o", Signature: []byte{1}}),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Unmarshal(enc); CodeOf(err) != CodeMalformed {
				t.Errorf("Unmarshal(%x) = %v, want malformed", enc, err)
			}
		})
	}
}

// sampleReceiptV2 is a receipt of version 2.
func sampleReceiptV2() *ReceiptV2 {
	return &ReceiptV2{ID: "000001", SID: "1155000001", Serial: []byte{0x42}, Name: "message.txt",
		Size: 290, SHA256: sha256.Sum256([]byte("content")), Received: 1800000000123,
		BoardCertSHA256: sha256.Sum256([]byte("board der")), Signature: []byte("receipt signature")}
}

// TestReceiptV2 checks that a receipt of version 2 decodes with its own
// layout (UnmarshalBodyOf), and that the two layouts do not read each
// other's bodies.
func TestReceiptV2(t *testing.T) {
	v2 := sampleReceiptV2()
	body := mustMarshal(v2)[1:]
	var got ReceiptV2
	if err := UnmarshalBodyOf(&got, body); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, v2) {
		t.Errorf("got %#v, want %#v", &got, v2)
	}
	if err := UnmarshalBodyOf(new(Receipt), body); CodeOf(err) != CodeMalformed {
		t.Errorf("a v2 body decoded as a v3 Receipt: %v", err)
	}
	var v3 Receipt
	for _, m := range sampleMessages() {
		if r, ok := m.(*Receipt); ok {
			v3 = *r
		}
	}
	if err := UnmarshalBodyOf(new(ReceiptV2), mustMarshal(&v3)[1:]); CodeOf(err) != CodeMalformed {
		t.Errorf("a v3 body decoded as a ReceiptV2: %v", err)
	}
	if err := UnmarshalBodyOf(new(ReceiptV2), append(body, 0)); CodeOf(err) != CodeMalformed {
		t.Errorf("trailing byte accepted: %v", err)
	}
}

// TestTermsBody checks that the statement's terms are the bytes as received,
// and the encoding of the fields on the board's side.
func TestTermsBody(t *testing.T) {
	sent := &Terms{Assignment: "hw1", Due: 5, Lock: 6, MaxSize: 7}
	enc := mustMarshal(sent)
	body, err := sent.Body()
	if err != nil || !bytes.Equal(body, enc[1:]) {
		t.Fatalf("Body() = %x, %v; want %x", body, err, enc[1:])
	}
	m, err := Unmarshal(enc)
	if err != nil {
		t.Fatal(err)
	}
	got := m.(*Terms)
	got.Due = 0 // a field changed after receipt does not change what she signs
	if body, _ := got.Body(); !bytes.Equal(body, enc[1:]) {
		t.Errorf("received Body() = %x, want %x", body, enc[1:])
	}
	enc[len(enc)-1] ^= 1
	if &enc[1] == &got.Raw[0] {
		t.Error("Raw shares the frame's memory")
	}
}

func receiptV2Seeds() map[string][]byte {
	body := mustMarshal(sampleReceiptV2())[1:]
	return map[string][]byte{
		"valid":     body,
		"truncated": body[:40],
		"trailing":  append(append([]byte(nil), body...), 0),
		"empty":     {},
	}
}

// TestFuzzReceiptV2Corpus checks (or, with -update, writes) the seed corpus
// of FuzzReceiptV2.
func TestFuzzReceiptV2Corpus(t *testing.T) {
	seeds := fuzzseed.Bytes(receiptV2Seeds())
	if *update {
		if err := fuzzseed.Write("FuzzReceiptV2", seeds); err != nil {
			t.Fatal(err)
		}
	}
	fuzzseed.Check(t, "FuzzReceiptV2", seeds, true, "run go test ./wire -run TestFuzzReceiptV2Corpus -update")
}

// FuzzReceiptV2 checks the decoder of stored version 2 receipts: it refuses
// as malformed or decodes to a receipt that re-encodes as its input.
func FuzzReceiptV2(f *testing.F) {
	for _, seed := range receiptV2Seeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var r ReceiptV2
		if err := UnmarshalBodyOf(&r, body); err != nil {
			if CodeOf(err) != CodeMalformed {
				t.Fatalf("got %v, want malformed", err)
			}
			return
		}
		if again := mustMarshal(&r)[1:]; !bytes.Equal(again, body) {
			t.Fatalf("re-encodes as %x, want %x", again, body)
		}
	})
}
