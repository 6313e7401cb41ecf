package attacklab

import (
	"fmt"
	"strings"
	"time"
)

// Markdown returns the results as the table `make attacks` prints: attack,
// what the attacker did, who detected it and how, the outcome, the protocol
// element that stops it, the verdict and the time the row took.
func Markdown(results []*Result) string {
	var b strings.Builder
	b.WriteString("| attack | what the attacker did | who detected it, and how | outcome | what stops it | verdict | time |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | **%s** | %s |\n",
			cell(r.Name), cell(r.Did), cell(r.Detected), cell(r.Outcome), cell(r.Element), r.Verdict,
			r.Elapsed.Round(10*time.Millisecond))
	}
	defeated := 0
	for _, r := range results {
		if r.Verdict == Defeated {
			defeated++
		}
	}
	fmt.Fprintf(&b, "\n%d of %d attacks defeated.\n", defeated, len(results))
	return b.String()
}

// cell makes text fit a Markdown table cell.
func cell(s string) string {
	if s == "" {
		return "—"
	}
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.Join(strings.Fields(s), " ")
}
