package session

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"pkiboard/internal/keys"
	"pkiboard/wire"
)

// jumpClock is a board's clock that a test moves: the board reads it for
// the handshake and the request, and the course moves it to the instant the
// board reads SubmitEnd.
type jumpClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *jumpClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *jumpClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// jumpCourse gives terms, then moves its clock to later: the time between
// the request and SubmitEnd.
type jumpCourse struct {
	testCourse
	clock *jumpClock
	later time.Time
	asked time.Time // the now Terms was given
}

func (c *jumpCourse) Terms(sid string, req *wire.SubmitRequest, now time.Time) (*wire.Terms, error) {
	c.asked = now
	t, err := c.testCourse.Terms(sid, req, now)
	c.clock.set(c.later)
	return t, err
}

// TestLatenessAtSubmitEnd checks PROTOCOL.md §5.4's instant that counts: the
// board judges a submission by its clock when it reads SubmitEnd, not when
// it read the request; received at or after lock is refused closed and no
// submission is returned; received after due is late by received − due;
// exactly at due is on time.
func TestLatenessAtSubmitEnd(t *testing.T) {
	p := pki(t)
	asked := time.Now().UTC().Truncate(time.Millisecond)
	received := asked.Add(10 * time.Second) // SubmitEnd is read ten seconds after the request
	ms := func(t time.Time) uint64 { return uint64(t.UnixMilli()) }
	tests := []struct {
		name      string
		due, lock time.Time // zero for none
		wantCode  wire.Code // 0: accepted
		wantLate  uint64
	}{
		{"no due time", time.Time{}, time.Time{}, 0, 0},
		{"due after received", received.Add(time.Millisecond), time.Time{}, 0, 0},
		{"exactly at due: on time", received, time.Time{}, 0, 0},
		{"a millisecond late", received.Add(-time.Millisecond), time.Time{}, 0, 1},
		{"due between the request and SubmitEnd: late", asked.Add(4 * time.Second), time.Time{}, 0, 6000},
		{"late and a millisecond before lock", received.Add(-90 * time.Second), received.Add(time.Millisecond), 0, 90000},
		{"exactly at lock: closed", received.Add(-time.Minute), received, wire.CodeClosed, 0},
		{"after lock: closed", time.Time{}, received.Add(-time.Millisecond), wire.CodeClosed, 0},
		{"lock between the request and SubmitEnd: closed", time.Time{}, asked.Add(time.Second), wire.CodeClosed, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &jumpClock{t: asked}
			terms := wire.Terms{}
			if !tt.due.IsZero() {
				terms.Due = ms(tt.due)
			}
			if !tt.lock.IsZero() {
				terms.Lock = ms(tt.lock)
			}
			course := &jumpCourse{testCourse: testCourse{terms: terms}, clock: clock, later: received}
			sc := p.serverConfig()
			sc.Now = clock.now
			cc := p.clientConfig("p256")
			cc.Now = func() time.Time { return asked }
			r := runSession(t, scenario{server: sc, client: cc, content: lab(testSID), course: course})
			if !course.asked.Equal(asked) {
				t.Errorf("the course was asked at %v, want the request's time %v", course.asked, asked)
			}
			if tt.wantCode != 0 {
				wantRefusal(t, "board", r.serverErr, tt.wantCode)
				wantPeerError(t, "student", r.clientErr, tt.wantCode)
				if r.sub != nil {
					t.Error("a closed submission was returned to be stored")
				}
				return
			}
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("board: %v; student: %v", r.serverErr, r.clientErr)
			}
			if !r.sub.Received.Equal(received) {
				t.Errorf("Received: got %v, want SubmitEnd's instant %v", r.sub.Received, received)
			}
			if got := r.sub.Late(); got != tt.wantLate {
				t.Errorf("Late: got %d ms, want %d", got, tt.wantLate)
			}
			if r.receipt.Late != tt.wantLate || r.receipt.Received != ms(received) || r.receipt.Due != terms.Due {
				t.Errorf("receipt: received %d due %d late %d; want %d %d %d", r.receipt.Received, r.receipt.Due, r.receipt.Late,
					ms(received), terms.Due, tt.wantLate)
			}
		})
	}
}

// runRaw runs a board (the handshake, then a submission received with
// course) against a student played by student, over loopback TCP, and
// returns what each side saw.
func runRaw(t *testing.T, p *testPKI, course Course, student func(*Conn) error) (sub *Submission, boardErr, studentErr error) {
	t.Helper()
	ln := listen(t)
	type boardOut struct {
		sub *Submission
		err error
	}
	done := make(chan boardOut, 1)
	go func() {
		var out boardOut
		defer func() { done <- out }()
		nc, err := ln.Accept()
		if err != nil {
			out.err = err
			return
		}
		defer wire.LingerClose(nc, 2*time.Second, math.MaxInt64)
		conn, err := Server(boardWire(nc), p.serverConfig())
		if err != nil {
			out.err = err
			return
		}
		defer conn.Close()
		out.sub, out.err = receiveSubmission(conn, course, &wire.Receiver{MaxSize: 1 << 20})
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := Client(studentWire(nc), p.clientConfig("p256"))
	if err == nil {
		studentErr = student(conn)
		conn.Close()
	} else {
		studentErr = err
	}
	nc.Close()
	select {
	case out := <-done:
		return out.sub, out.err, studentErr
	case <-time.After(testWaitDeadline):
		t.Fatal("the board did not finish")
	}
	return nil, nil, nil
}

// sendAndSign plays the student of a submission by hand: it sends req,
// reads the terms, sends content as the file name, and signs the statement
// with termsBody in place of the terms' body (nil: the terms' own).
func sendAndSign(conn *Conn, req *wire.SubmitRequest, name string, content, termsBody []byte) error {
	if err := conn.WriteMessage(req); err != nil {
		return err
	}
	terms, err := wire.Expect[*wire.Terms](conn.ReadMessage())
	if err != nil {
		return err
	}
	if termsBody == nil {
		termsBody = terms.Raw
	}
	sum := sha256.Sum256(content)
	if _, err := wire.SendFile(conn, name, bytes.NewReader(content), int64(len(content)), sum,
		wire.SendOptions{ChunkSize: wire.MaxDataChunk, SkipAck: true}); err != nil {
		return err
	}
	statement, err := Statement(conn.th, conn.sid, termsBody, req.Original, req.Name, req.Size, req.SHA256)
	if err != nil {
		return err
	}
	sig, err := keys.Sign(conn.key, conn.rand, statement)
	if err != nil {
		return err
	}
	if err := conn.WriteMessage(&wire.SubmitEnd{Signature: sig}); err != nil {
		return err
	}
	_, err = wire.Expect[*wire.Receipt](conn.ReadMessage())
	return err
}

// TestStatementOfAnotherAssignmentRefused checks that the statement covers
// the terms as the board sent them: a student who asked for hw2 and signs a
// statement over hw1's terms (the same session, file and times) is refused
// bad-submission-signature, so that a statement of one assignment is never
// one of another.
func TestStatementOfAnotherAssignmentRefused(t *testing.T) {
	p := pki(t)
	content := lab(testSID)
	req := NewSubmitRequest("hw2", "hw.txt", int64(len(content)), sha256.Sum256(content))
	hw1 := &wire.Terms{Assignment: "hw1", Due: 1e12, MaxSize: 1 << 30}
	hw1Body, err := hw1.Body()
	if err != nil {
		t.Fatal(err)
	}
	course := &testCourse{terms: wire.Terms{Due: 1e12}}
	for _, tt := range []struct {
		name      string
		termsBody []byte
		wantCode  wire.Code
	}{
		{"over the terms sent", nil, 0},
		{"over another assignment's terms", hw1Body, wire.CodeBadSubmissionSignature},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sub, boardErr, studentErr := runRaw(t, p, course, func(conn *Conn) error {
				return sendAndSign(conn, req, req.Name, content, tt.termsBody)
			})
			if tt.wantCode == 0 {
				if boardErr != nil || sub == nil || sub.Terms.Assignment != "hw2" {
					t.Fatalf("board: %v (submission %v)", boardErr, sub)
				}
				// The student reads no receipt: runRaw's board sends none.
				return
			}
			wantRefusal(t, "board", boardErr, tt.wantCode)
			wantPeerError(t, "student", studentErr, tt.wantCode)
		})
	}
}

// TestFileHeaderMustMatchRequest checks that the board refuses, with
// file-mismatch, a FileHeader whose name, size or SHA-256 is not the
// SubmitRequest's.
func TestFileHeaderMustMatchRequest(t *testing.T) {
	p := pki(t)
	content := lab(testSID)
	good := NewSubmitRequest("lab", "report.txt", int64(len(content)), sha256.Sum256(content))
	for _, tt := range []struct {
		name   string
		change func(r *wire.SubmitRequest)
	}{
		{"another name", func(r *wire.SubmitRequest) { r.Original, r.Name = "other.txt", "other.txt" }},
		{"another size", func(r *wire.SubmitRequest) { r.Size++ }},
		{"another SHA-256", func(r *wire.SubmitRequest) { r.SHA256[0] ^= 1 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := *good
			tt.change(&req)
			_, boardErr, studentErr := runRaw(t, p, nil, func(conn *Conn) error {
				return sendAndSign(conn, &req, good.Name, content, nil)
			})
			wantRefusal(t, "board", boardErr, wire.CodeFileMismatch)
			wantPeerError(t, "student", studentErr, wire.CodeFileMismatch)
		})
	}
}

// TestFirstRecordMustBeARequest checks that the board answers any first
// record other than SubmitRequest, HistoryRequest and AssignmentsRequest
// unexpected-message.
func TestFirstRecordMustBeARequest(t *testing.T) {
	p := pki(t)
	content := lab(testSID)
	sum := sha256.Sum256(content)
	for _, m := range []wire.Message{
		&wire.FileHeader{Name: "report.txt", Size: uint64(len(content)), SHA256: sum},
		&wire.Data{Bytes: content},
		&wire.SubmitEnd{Signature: []byte{1}},
		&wire.Terms{Assignment: "lab", MaxSize: 1},
		&wire.History{},
		&wire.Assignments{},
		&wire.Receipt{ID: "1", SID: testSID, Serial: []byte{1}, Assignment: "lab", Original: "a", Name: "a", Signature: []byte{1}},
		&wire.FileOffset{},
	} {
		t.Run(m.Type().String(), func(t *testing.T) {
			_, boardErr, studentErr := runRaw(t, p, nil, func(conn *Conn) error {
				if err := conn.WriteMessage(m); err != nil {
					return err
				}
				_, err := wire.Expect[*wire.Terms](conn.ReadMessage())
				return err
			})
			wantRefusal(t, "board", boardErr, wire.CodeUnexpectedMessage)
			wantPeerError(t, "student", studentErr, wire.CodeUnexpectedMessage)
		})
	}
}

// TestStudentChecksReceiptTerms checks that the student refuses a receipt,
// signed by the board, that does not say what she sent and was told: another
// assignment, original or due time than the terms', or a late that received
// and due do not make.
func TestStudentChecksReceiptTerms(t *testing.T) {
	p := pki(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	due := uint64(now.Add(-time.Minute).UnixMilli())
	for _, tt := range []struct {
		name   string
		change func(*wire.Receipt)
	}{
		{"unchanged", nil},
		{"another assignment", func(r *wire.Receipt) { r.Assignment = "hw9" }},
		{"another original", func(r *wire.Receipt) { r.Original = "other.txt" }},
		{"another due time", func(r *wire.Receipt) { r.Due += 1000; r.Late -= 1000 }},
		{"no due time: on time", func(r *wire.Receipt) { r.Due, r.Late = 0, 0 }},
		{"late zeroed", func(r *wire.Receipt) { r.Late = 0 }},
		{"late by more", func(r *wire.Receipt) { r.Late++ }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sc := p.serverConfig()
			sc.Now = func() time.Time { return now }
			r := runSession(t, scenario{server: sc, client: p.clientConfig("p256"), content: lab(testSID),
				course: &testCourse{terms: wire.Terms{Assignment: "lab", Due: due}}, receipt: tt.change})
			if tt.change == nil {
				if r.clientErr != nil || r.receipt.Late != 60000 {
					t.Fatalf("student: %v (late %v)", r.clientErr, r.receipt)
				}
				return
			}
			if !errors.Is(r.clientErr, ErrBadReceipt) {
				t.Errorf("got %v, want ErrBadReceipt", r.clientErr)
			}
		})
	}
}

// TestHistoryAsStored checks that the board's history sends each receipt
// byte for byte as the course holds it, in records of at most
// wire.MaxRecordBody bytes, and that the student checks each: a receipt of
// another student, one that does not verify, or one dated after her clock
// by more than the hello window, is named, the others kept — those a board
// whose clock is ahead of hers signed a moment ago among them.
func TestHistoryAsStored(t *testing.T) {
	p := pki(t)
	now := time.Now().UTC().Truncate(time.Millisecond)
	// The receipts: signed by the board of the session, enough of them to
	// need several records.
	const n = 150
	var items []wire.HistoryItem
	var board *Conn
	var want [][]byte
	sign := func(r *wire.Receipt) []byte {
		if err := board.SignReceipt(r); err != nil {
			t.Fatal(err)
		}
		m, err := wire.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return m[1:]
	}
	course := &historyCourse{}
	ln := listen(t)
	done := make(chan error, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer wire.LingerClose(nc, 2*time.Second, math.MaxInt64)
		conn, err := Server(boardWire(nc), p.serverConfig())
		if err != nil {
			done <- err
			return
		}
		defer conn.Close()
		board = conn
		for i := range n {
			r := &wire.Receipt{ID: fmt.Sprintf("%06d", n-i), SID: testSID,
				Serial: p.students["p256"].leaf().SerialNumber.Bytes(), Assignment: "lab", Original: "f.txt", Name: "f.txt",
				Size: 1, Received: uint64(now.Add(-time.Duration(i) * time.Minute).UnixMilli()), Version: uint32(n - i)}
			switch i {
			case 3:
				r.SID = "someone else"
			case 7: // dated after the student's clock, by more than the hello window
				r.Received = uint64(now.Add(DefaultHelloWindow - 2*time.Minute + time.Second).UnixMilli())
			}
			body := sign(r)
			if i == 5 {
				body[len(body)-1] ^= 1 // the signature's last byte
			}
			items = append(items, wire.HistoryItem{Version: wire.ReceiptVersion3, Receipt: body, Certificate: p.board.leaf().Raw})
			want = append(want, body)
		}
		course.items = items
		m, err := conn.ReadRequest()
		if err != nil {
			done <- err
			return
		}
		_, err = conn.ServeHistory(m.(*wire.HistoryRequest), course)
		done <- err
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// The student's clock is two minutes behind the board's: the newest
	// receipts are dated after her now, within the hello window.
	cc := p.clientConfig("p256")
	cc.Now = func() time.Time { return time.Now().Add(-2 * time.Minute) }
	conn, err := Client(studentWire(nc), cc)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := conn.History("")
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Fatalf("%d receipts, want %d", len(entries), len(want))
	}
	for i, e := range entries {
		if !bytes.Equal(e.Item.Receipt, want[i]) {
			t.Errorf("receipt %d is not byte for byte the stored one", i)
		}
		bad := i == 3 || i == 5 || i == 7
		if (e.Err != nil) != bad {
			t.Errorf("receipt %d: error %v, want one: %v", i, e.Err, bad)
		}
		if !bad {
			if _, err := e.ReceiptFile(); err != nil {
				t.Errorf("receipt %d: its file: %v", i, err)
			}
		}
	}
	if course.asked != testSID {
		t.Errorf("the course was asked for the history of %q, want the session's SID", course.asked)
	}
}

// historyCourse serves a history, and records for whom.
type historyCourse struct {
	testCourse
	items []wire.HistoryItem
	asked string
}

func (c *historyCourse) History(sid, _ string) ([]wire.HistoryItem, error) {
	c.asked = sid
	return c.items, nil
}

// TestPackHistory checks that packHistory fills records up to
// wire.MaxRecordBody bytes and 255 items, with More set on all but the last.
func TestPackHistory(t *testing.T) {
	big := wire.HistoryItem{Version: 3, Receipt: make([]byte, 300), Certificate: make([]byte, 20000)}
	small := wire.HistoryItem{Version: 3, Receipt: make([]byte, 10), Certificate: make([]byte, 10)}
	for _, tt := range []struct {
		name  string
		items []wire.HistoryItem
		want  []int // items per record
	}{
		{"none", nil, []int{0}},
		{"three large in one", []wire.HistoryItem{big, big, big}, []int{3}},
		{"four large in two", []wire.HistoryItem{big, big, big, big}, []int{3, 1}},
		{"300 small in two", slices.Repeat([]wire.HistoryItem{small}, 300), []int{255, 45}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			recs := packHistory(tt.items)
			if len(recs) != len(tt.want) {
				t.Fatalf("%d records, want %d", len(recs), len(tt.want))
			}
			for i, r := range recs {
				if len(r.Items) != tt.want[i] || r.More != (i < len(recs)-1) {
					t.Errorf("record %d: %d items more %v, want %d", i, len(r.Items), r.More, tt.want[i])
				}
				m, err := wire.Marshal(r)
				if err != nil || len(m)-1 > wire.MaxRecordBody {
					t.Errorf("record %d: %d bytes (%v), want at most %d", i, len(m)-1, err, wire.MaxRecordBody)
				}
			}
		})
	}
}

// assignmentsCourse serves a list of assignments.
type assignmentsCourse struct {
	testCourse
	items []wire.AssignmentItem
}

func (c *assignmentsCourse) Assignments(string, time.Time) ([]wire.AssignmentItem, error) {
	return c.items, nil
}

// TestAssignmentsInOneRecord checks that the board's Assignments is one
// record of at most wire.MaxRecordBody bytes and 255 items (PROTOCOL.md
// §5.4): a longer list is cut at the last item that fits, in order.
func TestAssignmentsInOneRecord(t *testing.T) {
	p := pki(t)
	long := strings.Repeat("x", wire.MaxTitleLen)
	largest := func(i int) wire.AssignmentItem {
		return wire.AssignmentItem{ID: fmt.Sprintf("%064d", i), Title: long, Patterns: long, MaxSize: 1}
	}
	smallest := func(i int) wire.AssignmentItem { return wire.AssignmentItem{ID: fmt.Sprint(i)} }
	for _, tt := range []struct {
		name string
		make func(int) wire.AssignmentItem
		n    int
		want int
	}{
		{"the largest items: 30 fit", largest, 40, 30},
		{"small items: 255 fit", smallest, 300, 255},
		{"a few", smallest, 3, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			course := &assignmentsCourse{}
			for i := range tt.n {
				course.items = append(course.items, tt.make(i))
			}
			ln := listen(t)
			sent := make(chan int, 1)
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					sent <- -1
					return
				}
				defer wire.LingerClose(nc, 2*time.Second, math.MaxInt64)
				conn, err := Server(boardWire(nc), p.serverConfig())
				if err != nil {
					sent <- -1
					return
				}
				defer conn.Close()
				if _, err := conn.ReadRequest(); err != nil {
					sent <- -1
					return
				}
				n, _ := conn.ServeAssignments(course)
				sent <- n
			}()
			nc, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			conn, err := Client(studentWire(nc), p.clientConfig("p256"))
			if err != nil {
				t.Fatal(err)
			}
			items, err := conn.Assignments()
			if err != nil {
				t.Fatal(err)
			}
			if n := <-sent; n != tt.want || len(items) != tt.want {
				t.Fatalf("the board sent %d, the student read %d; want %d", n, len(items), tt.want)
			}
			for i, it := range items {
				if it.ID != course.items[i].ID {
					t.Fatalf("item %d is %q, want %q: the first that fit, in order", i, it.ID, course.items[i].ID)
				}
			}
		})
	}
}
