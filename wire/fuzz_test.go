package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"pkiboard/internal/fuzzseed"
)

// fuzzMaxFrame is the frame limit of FuzzReadFrame: small, so that the fuzzer
// reaches it.
const fuzzMaxFrame = 64

// The seed corpora under testdata/fuzz/<FuzzName>/ are generated from these
// functions by go test -run TestFuzzCorpus -update.

func readFrameSeeds() map[string][]byte {
	frame := func(p []byte) []byte {
		var b bytes.Buffer
		WriteFrame(&b, p)
		return b.Bytes()
	}
	hello := frame([]byte("hello"))
	return map[string][]byte{
		"empty-input":      {},
		"empty-frame":      frame(nil),
		"one-frame":        hello,
		"two-frames":       append(frame([]byte{1}), hello...),
		"max-frame":        frame(bytes.Repeat([]byte{'m'}, fuzzMaxFrame)),
		"over-max":         frame(bytes.Repeat([]byte{'o'}, fuzzMaxFrame+1)),
		"header-4GiB":      {0xff, 0xff, 0xff, 0xff, 'x'},
		"truncated-header": {0, 0},
		"truncated-body":   hello[:7],
		"message-frame":    frame(mustMarshal(&FileOffset{Offset: 5})),
	}
}

func unmarshalSeeds() map[string][]byte {
	seeds := map[string][]byte{
		"empty":              {},
		"unknown-type":       {0x99, 1, 2, 3},
		"trailing":           {byte(TypeFileAck), 0},
		"empty-data":         {byte(TypeData)},
		"error-bad-utf8":     {byte(TypeError), 0, 1, 0, 2, 0xc3, 0x28},
		"error-text-1025":    append([]byte{byte(TypeError), 0, 1, 0x04, 0x01}, strings.Repeat("x", 1025)...),
		"header-long-len":    {byte(TypeFileHeader), 0xff, 'a'},
		"allfields-zero":     mustMarshal(&allFields{}),
		"allfields-full":     mustMarshal(&allFields{A: 1, B: 2, C: 3, D: 4, E: [3]byte{5, 6, 7}, F: []byte{8}, G: []byte{9, 9}, H: []byte{10}, I: "ï", J: "j"}),
		"error-empty-text":   mustMarshal(&Error{Code: CodeBusy}),
		"fileheader-hostile": mustMarshal(&FileHeader{Name: "../../etc/passwd", Size: 1 << 40}),
		"enroll-renewal": mustMarshal(&EnrollRequest{Version: ProtocolVersion, Profile: ProfileBoard, SID: "blackboard", CSR: []byte{0x30},
			Auth: AuthRenewal, Certificate: []byte{0x30, 0}, Signature: []byte{1}}),
		"enroll-none":       mustMarshal(&EnrollRequest{Version: ProtocolVersion, Profile: ProfileStudent, SID: "1155000001", CSR: []byte{0x30}}),
		"enroll-auth-3":     mustMarshal(&EnrollRequest{Version: ProtocolVersion, Profile: ProfileStudent, SID: "a", CSR: []byte{1}, Auth: 3}),
		"enroll-version-1":  {byte(TypeEnrollRequest), 1, 10, '1', '1', '5', '5', '0', '0', '0', '0', '0', '1', 0, 1, 0x30, 0},
		"terms-extended-2":  {byte(TypeTerms), 1, 'a', 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 1},
		"history-255-items": {byte(TypeHistory), 0, 255, 0, 3, 0, 1, 'r', 0, 1, 'c'},
		"history-version-1": {byte(TypeHistory), 0, 1, 0, 1, 0, 1, 'r', 0, 1, 'c'},
		"assignments-255":   {byte(TypeAssignments), 255, 1, 'a'},
		"submit-original-0": {byte(TypeSubmitRequest), 1, 'a', 0, 0, 1, 'a'},
	}
	for _, m := range append(sampleMessages(),
		&AdminRequest{Command: "revoke", Args: []byte(`{"sid":"1155000001","reason":"keyCompromise"}`)},
		&AdminResponse{Result: []byte(`[{"id":"000001","sid":"1155000001"}]`)},
	) {
		seeds["valid-"+m.Type().String()] = mustMarshal(m)
	}
	return seeds
}

// TestFuzzUnmarshalCoversEveryType checks that FuzzUnmarshal starts from a
// valid encoding of every message type of the table, so that the fuzzer reaches
// each decoder.
func TestFuzzUnmarshalCoversEveryType(t *testing.T) {
	covered := map[Type]bool{}
	for _, seed := range unmarshalSeeds() {
		if _, err := Unmarshal(seed); err == nil {
			covered[Type(seed[0])] = true
		}
	}
	for i, info := range messages {
		if info.newMsg != nil && !covered[Type(i)] {
			t.Errorf("FuzzUnmarshal has no valid %s seed (add one to unmarshalSeeds)", info.name)
		}
	}
}

func fileHeaderSeeds() map[string][]byte {
	body := func(h *FileHeader) []byte { return mustMarshal(h)[1:] }
	valid := body(&FileHeader{Name: "report.pdf", Size: 1234, SHA256: sha256.Sum256([]byte("report"))})
	return map[string][]byte{
		"valid":         valid,
		"empty-name":    body(&FileHeader{}),
		"max-name":      body(&FileHeader{Name: strings.Repeat("n", NameMaxLen), Size: 1}),
		"long-name":     body(&FileHeader{Name: strings.Repeat("n", 255)}),
		"dotdot":        body(&FileHeader{Name: "..", Size: 2}),
		"slash":         body(&FileHeader{Name: "a/b"}),
		"nul":           body(&FileHeader{Name: "a\x00b"}),
		"non-ascii":     body(&FileHeader{Name: "résumé.pdf"}),
		"truncated":     valid[:20],
		"trailing":      append(append([]byte(nil), valid...), 0),
		"bad-utf8-name": {2, 0xff, 0xfe},
	}
}

func mustMarshal(m Message) []byte {
	b, err := Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

// TestFuzzCorpus checks (or, with -update, writes) the committed seed corpora.
func TestFuzzCorpus(t *testing.T) {
	for target, seeds := range map[string]map[string][]byte{
		"FuzzReadFrame":  readFrameSeeds(),
		"FuzzUnmarshal":  unmarshalSeeds(),
		"FuzzFileHeader": fileHeaderSeeds(),
		"FuzzReceive":    receiveSeeds(),
		"FuzzSafeName":   safeNameSeeds(),

		"FuzzReadFrameGrowing": growSeeds(),
	} {
		if *update {
			if err := fuzzseed.Write(target, fuzzseed.Bytes(seeds)); err != nil {
				t.Fatal(err)
			}
		}
		fuzzseed.Check(t, target, fuzzseed.Bytes(seeds), true, "run go test ./wire -run TestFuzzCorpus -update")
	}
}

func safeNameSeeds() map[string][]byte {
	return map[string][]byte{
		"valid":     []byte("report.pdf"),
		"dotdot":    []byte(".."),
		"dash":      []byte("-"),
		"space":     []byte("a b"),
		"non-utf8":  {0xff, 0xfe},
		"too-long":  []byte(strings.Repeat("x", NameMaxLen+3)),
		"empty":     {},
		"separator": []byte("../etc/passwd"),
	}
}

// FuzzSafeName checks that whatever base name a student's report has,
// SafeName gives a name ValidName accepts, and leaves a valid one as it is.
func FuzzSafeName(f *testing.F) {
	for _, seed := range safeNameSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := string(data)
		got := SafeName(base, "report")
		if err := ValidName(got); err != nil {
			t.Fatalf("SafeName(%q) = %q: %v", base, got, err)
		}
		if ValidName(base) == nil && got != base {
			t.Fatalf("SafeName changed the valid name %q to %q", base, got)
		}
	})
}

func FuzzReadFrame(f *testing.F) {
	for _, seed := range readFrameSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, buf := range [][]byte{nil, make([]byte, 0, 8), make([]byte, 0, fuzzMaxFrame)} {
			r := bytes.NewReader(data)
			consumed := 0
			for {
				p, err := ReadFrame(r, fuzzMaxFrame, buf)
				if err != nil {
					switch {
					case err == io.EOF:
						if consumed != len(data) {
							t.Fatalf("io.EOF after %d of %d bytes", consumed, len(data))
						}
					case isRefusal(err, CodeMalformed) && errors.Is(err, io.ErrUnexpectedEOF): // truncated
					case isRefusal(err, CodeFrameTooLarge):
						size := binary.BigEndian.Uint32(data[consumed:])
						if size <= fuzzMaxFrame {
							t.Fatalf("refused a frame of %d bytes under the maximum %d", size, fuzzMaxFrame)
						}
						if want := fmt.Sprintf("frame-too-large: frame of %d bytes exceeds the maximum of %d", size, fuzzMaxFrame); err.Error() != want {
							t.Fatalf("got %q, want %q", err, want)
						}
						if r.Len() != len(data)-consumed-HeaderSize {
							t.Fatalf("read %d payload bytes of a refused frame", len(data)-consumed-HeaderSize-r.Len())
						}
					default:
						t.Fatalf("unexpected error %v", err)
					}
					break
				}
				if len(p) > fuzzMaxFrame {
					t.Fatalf("got a payload of %d bytes over the maximum %d", len(p), fuzzMaxFrame)
				}
				if !bytes.Equal(p, data[consumed+HeaderSize:consumed+HeaderSize+len(p)]) {
					t.Fatalf("payload differs from the input")
				}
				consumed += HeaderSize + len(p)
			}
		}
	})
}

func FuzzUnmarshal(f *testing.F) {
	for _, seed := range unmarshalSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Unmarshal(data)
		if err != nil {
			if !isRefusal(err, CodeMalformed) && !isRefusal(err, CodeUnknownMessage) {
				t.Fatalf("got error %v, want a malformed or unknown-message refusal", err)
			}
			if c := CodeOf(err); c != CodeMalformed && c != CodeUnknownMessage {
				t.Fatalf("CodeOf(%v) = %v, want malformed or unknown-message", err, c)
			}
			return
		}
		// Strict decoding means a single encoding per message: re-encoding
		// gives back the input, byte for byte.
		again, err := Marshal(m)
		if err != nil {
			t.Fatalf("Marshal of a decoded %v: %v", m.Type(), err)
		}
		if !bytes.Equal(again, data) {
			t.Fatalf("decoded %v re-encodes as\n%x\nwant\n%x", m.Type(), again, data)
		}
	})
}

func FuzzFileHeader(f *testing.F) {
	for _, seed := range fileHeaderSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var h FileHeader
		p := NewParser(body)
		h.UnmarshalBody(p)
		err := p.Finish()
		m, uerr := Unmarshal(append([]byte{byte(TypeFileHeader)}, body...))
		if (err == nil) != (uerr == nil) {
			t.Fatalf("parsing the body: %v; Unmarshal of the frame: %v", err, uerr)
		}
		if err != nil {
			return
		}
		if *m.(*FileHeader) != h {
			t.Fatalf("Unmarshal gave %+v, the body parser %+v", m, h)
		}
		if again := mustMarshal(&h)[1:]; !bytes.Equal(again, body) {
			t.Fatalf("re-encoded as %x, want %x", again, body)
		}

		nerr := ValidName(h.Name)
		if nerr != nil {
			var bad *Refusal
			prefix := fmt.Sprintf("bad file name %q: ", h.Name)
			if !errors.As(nerr, &bad) || !strings.HasPrefix(bad.Text, prefix) || len(bad.Text) == len(prefix) || CodeOf(nerr) != CodeBadFileName {
				t.Fatalf("ValidName(%q) = %v, want a bad-file-name refusal naming it and the rule", h.Name, nerr)
			}
			return
		}
		// A valid name is safe as the last element of a path.
		if len(h.Name) == 0 || len(h.Name) > NameMaxLen || h.Name[0] == '.' || h.Name[0] == '-' ||
			strings.ContainsAny(h.Name, "/\\\x00 \t\r\n") || h.Name == "." || h.Name == ".." ||
			!filepath.IsLocal(h.Name) || filepath.Base(h.Name) != h.Name {
			t.Fatalf("ValidName accepted %q", h.Name)
		}
		for _, c := range []byte(h.Name) {
			if !strings.ContainsRune("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+", rune(c)) {
				t.Fatalf("ValidName accepted %q with byte %#x", h.Name, c)
			}
		}
	})
}
