package keeper

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		status int
		code   string
		want   class
	}{
		{400, "invalid_grant", classDead},
		{400, "invalid_token", classDead},
		{401, "invalid_client", classClient},
		{400, "unauthorized_client", classClient},
		{429, "", classBusy},
		{429, "slow_down", classBusy},
		{500, "", classServer},
		{503, "temporarily_unavailable", classServer},
		{200, "invalid_grant", classDead}, // an error code wins whatever the status
		{200, "server_error", classLost},  // a 200 carrying an error: outcome unknown
		{400, "invalid_request", classRejected},
		{400, "invalid_scope", classRejected},
		{404, "", classRejected},
		{302, "", classRejected},
	} {
		re := &oauth2.RetrieveError{Response: &http.Response{StatusCode: tc.status, Header: http.Header{}}, ErrorCode: tc.code, Body: []byte(`{"access_token":"pat_secret"}`)}
		got := classify(re)
		if got.class != tc.want {
			t.Errorf("%d %q: class %s, want %s", tc.status, tc.code, got.class, tc.want)
		}
		if strings.Contains(got.err.Error(), "pat_secret") {
			t.Errorf("%d %q: the error text quotes the response body: %v", tc.status, tc.code, got.err)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{"9227000000", 24 * time.Hour}, // found by FuzzRetryAfter: overflowed to a negative wait
		{now.Add(1000 * time.Hour).Format(http.TimeFormat), 24 * time.Hour},
	} {
		if got := retryAfter(tc.in, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// FuzzRetryAfter: a Retry-After header from the provider never panics and
// never yields a negative wait.
func FuzzRetryAfter(f *testing.F) {
	for _, s := range []string{"", "1", "120", "-1", "99999999999999999999", "Wed, 21 Oct 2015 07:28:00 GMT", "1.5", " 3"} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("retryAfter(%q) = %s", v, d)
		}
	})
}

func TestErrorCode(t *testing.T) {
	for in, want := range map[string]string{
		"invalid_grant":         "invalid_grant",
		"bad\xffcode":           "bad?code",
		"quote\"and\\back":      "quote?and?back",
		strings.Repeat("x", 99): strings.Repeat("x", 64),
	} {
		if got := errorCode(in); got != want {
			t.Errorf("errorCode(%q) = %q, want %q", in, got, want)
		}
	}
}
