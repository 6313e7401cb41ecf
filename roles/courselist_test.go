package roles

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"strconv"
	"testing"
	"time"
)

// listAtOnce is how `submissions --assignment` printed its lines before it
// streamed them: the whole list at once. assignmentWriter must write the same
// bytes.
func listAtOnce(format string, lines []AssignmentSubmission) string {
	var b bytes.Buffer
	switch format {
	case FormatJSON:
		printJSON(&b, lines) //nolint:errcheck // a buffer
	case FormatCSV:
		cw := csv.NewWriter(&b)
		_ = cw.Write([]string{"sid", "version", "active", "original", "name", "size", "sha256", "received", "due", "late_ms", "extended", "id"})
		for _, l := range lines {
			_ = cw.Write([]string{l.SID, strconv.FormatUint(uint64(l.Version), 10), strconv.FormatBool(l.Active), l.Original, l.Name,
				strconv.FormatInt(l.Size, 10), l.SHA256, msText(&l.Received), msText(l.Due), strconv.FormatUint(l.LateMS, 10),
				strconv.FormatBool(l.Extended), l.ID})
		}
		cw.Flush()
	default:
		tw := newTable(&b)
		fmt.Fprintln(tw, "SID\tVERSION\tACTIVE\tORIGINAL\tSIZE\tSHA-256\tRECEIVED\tDUE\tLATE\tEXTENSION\tID")
		for _, l := range lines {
			active, ext := "", ""
			if l.Active {
				active = "active"
			}
			if l.Extended {
				ext = "extended"
			}
			fmt.Fprintf(tw, "%s\t%d\t%s\t%q\t%d\t%s…\t%s\t%s\t%s\t%s\t%s\n", l.SID, l.Version, active, l.Original, l.Size, l.SHA256[:16],
				msText(&l.Received), orNone(msText(l.Due)), lateText(l.LateMS), ext, l.ID)
		}
		tw.Flush()
	}
	return b.String()
}

// TestAssignmentWriterWritesWhatTheListDid: streamed line by line, the
// table, the JSON and the CSV of `submissions --assignment` are the bytes
// the whole list gave, for none, one and several lines.
func TestAssignmentWriterWritesWhatTheListDid(t *testing.T) {
	due := time.Date(2026, 3, 1, 23, 59, 0, 0, time.UTC)
	sum := "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	all := []AssignmentSubmission{
		{ID: "000001", SID: "1155000001", Version: 1, Original: `lab "1" <final> & more.pdf`, Name: "lab-1.pdf", Size: 12,
			SHA256: sum, Received: due.Add(-time.Hour)},
		{ID: "000002", SID: "1155000001", Version: 2, Active: true, Original: "lab.pdf", Name: "lab-2.pdf", Size: 123456,
			SHA256: sum, Received: due.Add(90 * time.Second), Due: &due, LateMS: 90000, Extended: true},
		{ID: "000003", SID: "1155000002", Version: 1, Active: true, Original: "實驗.pdf", Name: "x.pdf", Size: 0,
			SHA256: sum, Received: due.Add(-time.Minute), Due: &due},
	}
	for _, format := range []string{FormatTable, FormatJSON, FormatCSV} {
		for _, n := range []int{0, 1, 3} {
			t.Run(fmt.Sprintf("%q %d lines", format, n), func(t *testing.T) {
				var b bytes.Buffer
				aw := newAssignmentWriter(format, &b)
				for _, l := range all[:n] {
					if err := aw.line(l); err != nil {
						t.Fatal(err)
					}
				}
				if err := aw.end(); err != nil {
					t.Fatal(err)
				}
				if want := listAtOnce(format, all[:n]); b.String() != want {
					t.Errorf("got\n%s\nwant\n%s", b.String(), want)
				}
			})
		}
	}
}
