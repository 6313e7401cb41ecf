package wire

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"pkiboard/internal/fuzzseed"
)

func sampleStatus() *BoardStatus {
	return &BoardStatus{
		Serial:     []byte{0x01, 0x02, 0x03},
		CertSHA256: sha256.Sum256([]byte("board certificate")),
		CRLNumber:  7,
		ThisUpdate: 1_790_000_000,
		NextUpdate: 1_790_003_660,
		Signature:  []byte{0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01},
	}
}

// TestBoardStatusEncoding checks the layout of PROTOCOL.md §4.4 byte by byte.
func TestBoardStatusEncoding(t *testing.T) {
	s := sampleStatus()
	got, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := "03" + "010203" + hex.EncodeToString(s.CertSHA256[:]) + "0000000000000007" + "00" +
		"000000006ab13b80" + "000000006ab149cc" + "0008" + "3006020101020101"
	if hex.EncodeToString(got) != want {
		t.Errorf("encoding:\n got %x\nwant %s", got, want)
	}
	signed, err := s.SignedBytes()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(signed, []byte("pkiboard v2 board status\x00")) || !bytes.Equal(signed[len(ContextBoardStatus)+1:], got[:len(got)-2-len(s.Signature)]) {
		t.Errorf("signed bytes: got %x, want the context, a zero byte and every field but the signature", signed)
	}
	back, err := ParseBoardStatus(got)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := back.Marshal(); !bytes.Equal(again, got) {
		t.Errorf("round trip: got %x want %x", again, got)
	}
	s.Revoked = true
	revoked, _ := s.Marshal()
	if back, err := ParseBoardStatus(revoked); err != nil || !back.Revoked {
		t.Errorf("revoked status: got %+v, %v", back, err)
	}
	if len(got) > MaxBoardStatusLen {
		t.Errorf("an encoding of %d bytes exceeds MaxBoardStatusLen %d", len(got), MaxBoardStatusLen)
	}
}

func TestParseBoardStatusStrict(t *testing.T) {
	good, _ := sampleStatus().Marshal()
	revokedAt := 1 + 3 + 32 + 8
	tests := map[string]struct {
		data []byte
		want string
	}{
		"empty":          {nil, "truncated"},
		"no serial":      {append([]byte{0}, good[4:]...), "serial of 0 bytes"},
		"revoked 2":      {append(append(bytes.Clone(good[:revokedAt]), 2), good[revokedAt+1:]...), "revoked is 2"},
		"no signature":   {append(bytes.Clone(good[:len(good)-10]), 0, 0), "signature of 0 bytes"},
		"trailing":       {append(bytes.Clone(good), 0), "trailing"},
		"truncated hash": {good[:20], "truncated"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := ParseBoardStatus(tt.data)
			var r *Refusal
			if !errors.As(err, &r) || r.Code != CodeMalformed || !strings.Contains(r.Text, tt.want) {
				t.Errorf("got %v, want a malformed refusal saying %q", err, tt.want)
			}
		})
	}
}

func boardStatusSeeds() map[string][]byte {
	good, _ := sampleStatus().Marshal()
	long := sampleStatus()
	long.Serial = bytes.Repeat([]byte{0xff}, MaxSerialLen)
	long.Signature = bytes.Repeat([]byte{0x01}, MaxSignatureLen)
	longest, _ := long.Marshal()
	return map[string][]byte{
		"valid":     good,
		"longest":   longest,
		"empty":     {},
		"truncated": good[:len(good)/2],
		"trailing":  append(bytes.Clone(good), 0),
	}
}

// FuzzBoardStatus decodes arbitrary bytes as a BoardStatus: a malformed
// refusal or a status that encodes back to the same bytes, never a panic.
func FuzzBoardStatus(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseBoardStatus(data)
		if err != nil {
			var r *Refusal
			if !errors.As(err, &r) || r.Code != CodeMalformed {
				t.Fatalf("a failure that is not a malformed refusal: %v", err)
			}
			return
		}
		again, err := s.Marshal()
		if err != nil || !bytes.Equal(again, data) {
			t.Fatalf("decoded %x, encoded back %x (%v)", data, again, err)
		}
	})
}

func TestBoardStatusCorpus(t *testing.T) {
	seeds := fuzzseed.Bytes(boardStatusSeeds())
	if *update {
		if err := fuzzseed.Write("FuzzBoardStatus", seeds); err != nil {
			t.Fatal(err)
		}
	}
	fuzzseed.Check(t, "FuzzBoardStatus", seeds, true, "run go test ./wire -run TestBoardStatusCorpus -update")
}
