package roles

import (
	"testing"

	"pkiboard/config"
	"pkiboard/session"
)

func TestMinBoardFrameFitsARecord(t *testing.T) {
	if config.MinBoardFrame != session.MaxRecord {
		t.Errorf("config.MinBoardFrame = %d, session.MaxRecord = %d: they must agree", config.MinBoardFrame, session.MaxRecord)
	}
}

func TestTransferName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"report.pdf", "report.pdf"},
		{"My Report (final).pdf", "My_Report__final_.pdf"},
		{".hidden", "_hidden"},
		{"-rf", "_rf"},
		{"résumé.txt", "r__sum__.txt"},
		{"", "report"},
	}
	for _, tt := range tests {
		if got := transferName(tt.in); got != tt.want {
			t.Errorf("transferName(%q): got %q want %q", tt.in, got, tt.want)
		}
	}
}
