package roles

import (
	"errors"
	"testing"
)

func TestShellQuote(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"pkiboard", "--role=student", "--ids", "1155000001,1155000002"}, "pkiboard --role=student --ids 1155000001,1155000002"},
		{[]string{"pkiboard", "--report", "my report.pdf"}, "pkiboard --report 'my report.pdf'"},
		{[]string{"pkiboard", "--message", "it's done"}, `pkiboard --message 'it'\''s done'`},
		{[]string{"pkiboard", "--report", "報告.pdf"}, "pkiboard --report '報告.pdf'"},
		{[]string{"pkiboard", "--message", ""}, "pkiboard --message ''"},
	} {
		if got := ShellQuote(tc.args); got != tc.want {
			t.Errorf("ShellQuote(%q): got %s, want %s", tc.args, got, tc.want)
		}
	}
}

func TestInterruptedLine(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "1155000001: submitted before the interrupt (its receipt is saved)"},
		{&UploadInterruptedError{SID: "1155000001", Name: "report.pdf", Sent: 13<<20 + 1<<19, Size: 50 << 20},
			"1155000001: interrupted after sending 13.5 MiB of 50.0 MiB of report.pdf; the board keeps what of it it had made durable, and a rerun resumes from there"},
		{errors.New("context canceled"), "1155000001: not submitted yet; the command below submits it"},
	} {
		if got := interruptedLine("1155000001", tc.err); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
