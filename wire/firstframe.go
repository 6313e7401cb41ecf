package wire

// The largest legal first message a daemon reads on a new connection
// (PROTOCOL.md §1), as a frame payload: the type byte and the sum of the
// maxima of the message's fields. A daemon reads a connection's first frame
// with this limit (Options.MaxFirstFrame) and only later frames with its
// max_frame, so that a stranger's first header cannot make it wait for, or
// grow a buffer toward, more than any honest client sends first.
const (
	// MaxFirstFrameCA bounds the first frame at the CA: an EnrollRequest
	// (PROTOCOL.md §4.2) with every field at its maximum — larger than a Fetch
	// or a WatchRequest, the other first messages.
	MaxFirstFrameCA = 1 + // type
		2 + // version: u16
		1 + // profile: u8
		1 + MaxSIDLen + // sid: string8
		2 + MaxCSRLen + // csr: bytes16
		RootFingerprintLen + // root: fixed[32]
		1 + // auth: u8
		1 + TokenKeyLen + // token_key: bytes8
		2 + MaxCertLen + // certificate: bytes16
		2 + MaxSignatureLen // signature: bytes16

	// MaxFirstFrameBoard bounds the first frame at the board: a ClientHello
	// (PROTOCOL.md §5.1) with every field at its maximum.
	MaxFirstFrameBoard = 1 + // type
		2 + // version: u16
		1 + MaxSIDLen + // sid: string8
		2 + MaxCertLen + // certificate: bytes16
		RandomLen + // random: fixed[32]
		8 + // time: u64
		1 + 2*MaxSuites + // suites: list8<u16>
		2 + // kem: u16
		2 + MaxKeyShareLen + // kem_public: bytes16
		2 + MaxSignatureLen // signature: bytes16
)
