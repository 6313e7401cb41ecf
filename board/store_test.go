package board

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"pkiboard/internal/testcert"
	"pkiboard/session"
	"pkiboard/wire"
)

// receive runs a real file transfer of content over a pipe into s's receiver
// for sid and returns the verified, uncommitted file.
func receive(t *testing.T, s *Store, sid, name string, content []byte) *wire.Received {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	sender, receiver := wire.NewConn(a, wire.Options{}), wire.NewConn(b, wire.Options{MaxFrame: 128 << 10})
	errc := make(chan error, 1)
	go func() {
		_, err := wire.SendFile(sender, name, bytes.NewReader(content), int64(len(content)), sha256.Sum256(content), wire.SendOptions{SkipAck: true})
		errc <- err
	}()
	in, err := s.Receiver(sid, UploadLimits{MaxSize: 1 << 20}).Receive(receiver)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return in
}

// submission returns what a session that received in for sid returns: the
// file and its evidence (a certificate for sid, a transcript hash and a
// signature, which Commit stores and does not check).
func submission(t *testing.T, sid string, in *wire.Received) *session.Submission {
	t.Helper()
	k := testcert.Key(t)
	cert := testcert.Issue(t, &x509.Certificate{Subject: pkix.Name{CommonName: sid}}, nil, k.Public(), k)
	terms := &wire.Terms{Assignment: LabAssignment, MaxSize: 1 << 30}
	body, err := terms.Body()
	if err != nil {
		t.Fatal(err)
	}
	return &session.Submission{
		File:           in,
		Request:        &wire.SubmitRequest{Assignment: LabAssignment, Original: in.Name, Name: in.Name, Size: uint64(in.Size), SHA256: in.SHA256},
		Original:       in.Name,
		Terms:          terms,
		TermsBody:      body,
		Received:       time.Now().UTC().Truncate(time.Millisecond),
		SID:            sid,
		Suite:          session.SuiteAES256GCM, // the default suite, which migration 5 admits
		Chain:          []*x509.Certificate{cert},
		Board:          testBoard(t).cert,
		TranscriptHash: sha256.Sum256([]byte("transcript of " + sid)),
		Statement:      []byte("statement of " + sid),
		Signature:      []byte("signature of " + sid),
	}
}

// TestCommitRecordsTheSession checks the record Commit builds from a
// session's submission: every field of the evidence, the peer, the time of
// receipt to the millisecond in UTC, and the receipt, signed by the session's
// board certificate, as stored and as returned.
func TestCommitRecordsTheSession(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	at := time.Date(2026, 6, 1, 20, 0, 0, 123456789, time.FixedZone("HKT", 8*3600))
	content := []byte("This is submission from 1155000001.\n")
	in := receive(t, s, "1155000001", "message.txt", content)
	sub := submission(t, "1155000001", in)
	sub.Received = at // the session's instant that counts
	sub.Suite = session.SuiteRC4HMACSHA256
	var signed *wire.Receipt
	rec, err := s.Commit(sub, "192.0.2.7:51234", func(r *wire.Receipt) error {
		signed = r
		return testBoard(t).sign(r)
	})
	if err != nil {
		t.Fatal(err)
	}
	wantReceipt := &wire.Receipt{
		ID: "000001", SID: "1155000001", Serial: sub.Chain[0].SerialNumber.Bytes(), Assignment: "lab", Original: "message.txt",
		Name: "message.txt", Size: uint64(len(content)), SHA256: sha256.Sum256(content),
		Received: uint64(time.Date(2026, 6, 1, 12, 0, 0, 123000000, time.UTC).UnixMilli()), Version: 1,
		BoardCertSHA256: sha256.Sum256(testBoard(t).cert.Raw), Signature: signed.Signature,
	}
	if !reflect.DeepEqual(signed, wantReceipt) {
		t.Errorf("signed receipt\n%+v\nwant\n%+v", signed, wantReceipt)
	}
	msg, err := wire.Marshal(wantReceipt)
	if err != nil {
		t.Fatal(err)
	}
	want := Record{
		ID:                 "000001",
		SID:                "1155000001",
		Serial:             sub.Chain[0].SerialNumber.Bytes(),
		Name:               "message.txt",
		Size:               int64(len(content)),
		SHA256:             sha256.Sum256(content),
		Suite:              "rc4-hmac-sha256",
		Peer:               "192.0.2.7:51234",
		Received:           time.Date(2026, 6, 1, 12, 0, 0, 123000000, time.UTC),
		File:               "000001.dat",
		StudentCertificate: sub.Chain[0].Raw,
		Transcript:         sub.TranscriptHash,
		Statement:          sub.Statement,
		Signature:          sub.Signature,
		BoardCertificate:   testBoard(t).cert.Raw,
		Receipt:            msg[1:],
		Assignment:         "lab",
		Original:           "message.txt",
		Version:            1,
		Terms:              sub.TermsBody,
		ReceiptVersion:     wire.ReceiptVersion3,
	}
	got, err := s.Get(rec.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Record{rec, got} {
		if !reflect.DeepEqual(*r, want) {
			t.Errorf("got record\n%+v\nwant\n%+v", *r, want)
		}
		if m, err := r.ReceiptMessage(); err != nil || !reflect.DeepEqual(m, wantReceipt) {
			t.Errorf("the stored receipt decodes as %+v, %v; want %+v", m, err, wantReceipt)
		}
	}
}

func TestCommitListsAndKeepsContent(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	contents := map[string][]byte{
		"a": []byte("This is submission from a.\n"),
		"b": bytes.Repeat([]byte("report "), 10000),
	}
	for _, sid := range []string{"a", "b"} {
		in := receive(t, s, sid, "message.txt", contents[sid])
		rec, err := s.Commit(submission(t, sid, in), "127.0.0.1:40000", testBoard(t).sign)
		if err != nil {
			t.Fatal(err)
		}
		if rec.ID == "" || rec.File == "" {
			t.Fatalf("commit %s: got id %q file %q", sid, rec.ID, rec.File)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recs, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(recs), 2; got != want {
		t.Fatalf("after reopen: got %d submissions want %d", got, want)
	}
	ids := map[string]bool{}
	for _, r := range recs {
		if ids[r.ID] {
			t.Errorf("duplicate id %s", r.ID)
		}
		ids[r.ID] = true
		got, err := os.ReadFile(s.ContentPath(&r))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, contents[r.SID]) || sha256.Sum256(got) != r.SHA256 {
			t.Errorf("submission %s of %s: stored content differs from what was sent", r.ID, r.SID)
		}
		if g, err := s.Get(r.ID); err != nil || g.SID != r.SID {
			t.Errorf("Get(%s): got %v, %v", r.ID, g, err)
		}
	}
	for _, id := range []string{"nope", "", "000003", "1", "0000001", "-00001", "+00001", "18446744073709551616"} {
		if r, err := s.Get(id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get(%q) of an unknown id: got %v, %v, want ErrNotFound", id, r, err)
		}
	}
}

func TestUncommittedIsNotListedAndOrphansGo(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := receive(t, s, "a", "report.pdf", []byte("half a report"))
	// A received but uncommitted file is not a submission.
	if recs, _ := s.List(); len(recs) != 0 {
		t.Fatalf("got %d submissions before commit, want 0", len(recs))
	}
	// Simulate a crash between storing the content and indexing it.
	orphan := filepath.Join(s.dir, ContentDir, "deadbeef"+contentSuffix)
	if err := place(in, orphan); err != nil {
		t.Fatal(err)
	}
	n, err := s.RemoveOrphans()
	if err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("orphans removed: got %d want 1", n)
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Errorf("orphan still there: %v", err)
	}
}

func TestReceiverIsPerSID(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pa, pb := s.partials("a"), s.partials("../b")
	if pa.dir == pb.dir {
		t.Errorf("two SIDs share the partial directory %s", pa.dir)
	}
	if filepath.Dir(pb.dir) != filepath.Join(s.dir, partialDir) {
		t.Errorf("a hostile SID escaped the partial directory: %s", pb.dir)
	}
	if pa.inMemory != InMemoryMax {
		t.Errorf("the store receives up to %d bytes in memory, want InMemoryMax", pa.inMemory)
	}
}

// TestCommitFailureDiscards checks that an upload Commit cannot store is
// discarded: nothing is listed, and its partial file and checkpoint are gone.
func TestCommitFailureDiscards(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	content := bytes.Repeat([]byte("a big report\n"), 10_000) // above InMemoryMax: a partial file
	in := receive(t, s, "a", "report.txt", content)
	if _, ok := in.Sink.(*partialSink); !ok {
		t.Fatalf("got sink %T, want a partial file", in.Sink)
	}
	if err := os.RemoveAll(filepath.Join(s.dir, ContentDir)); err != nil { // the rename fails
		t.Fatal(err)
	}
	if _, err := s.Commit(submission(t, "a", in), "127.0.0.1:40000", testBoard(t).sign); err == nil {
		t.Fatal("Commit succeeded without its submissions directory")
	}
	if recs, _ := s.List(); len(recs) != 0 {
		t.Errorf("got %d submissions, want none", len(recs))
	}
	if got := dirNames(t, s.partials("a").dir); len(got) != 0 {
		t.Errorf("got %q in the partial directory after a failed commit, want nothing", got)
	}
}

// TestCanonicalID: an id as a person types it names the stored one.
func TestCanonicalID(t *testing.T) {
	for in, want := range map[string]string{"3": "000003", "000003": "000003", "0003": "000003", "1234567": "1234567", "x3": "x3", "": ""} {
		if got := CanonicalID(in); got != want {
			t.Errorf("CanonicalID(%q) = %q, want %q", in, got, want)
		}
	}
}
