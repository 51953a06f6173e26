package oautherr_test

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/tokenkeeper/tokenkeeper/internal/oautherr"
)

func TestRedact(t *testing.T) {
	// Without an error code, x/oauth2 quotes the whole body.
	re := &oauth2.RetrieveError{
		Response: &http.Response{StatusCode: 400, Status: "400 Bad Request"},
		Body:     []byte(`access_token=pat_secret&oops`),
	}
	if !strings.Contains(re.Error(), "pat_secret") {
		t.Fatal("the premise changed: RetrieveError no longer quotes its body")
	}
	for _, err := range []error{re, fmt.Errorf("exchange: %w", re)} {
		got := oautherr.Redact(err)
		if strings.Contains(got.Error(), "pat_secret") || got.Error() != "token endpoint answered 400" {
			t.Fatalf("Redact(%T).Error() = %q", err, got.Error())
		}
		var back *oauth2.RetrieveError
		if !errors.As(got, &back) || back != re {
			t.Fatal("the RetrieveError is not in the chain")
		}
	}
	other := errors.New("dial tcp: connection refused")
	if oautherr.Redact(other) != other || oautherr.Redact(nil) != nil {
		t.Fatal("Redact changed an error without a RetrieveError")
	}
	coded := &oauth2.RetrieveError{Response: &http.Response{StatusCode: 400}, ErrorCode: "invalid_grant"}
	if got := oautherr.Redact(coded).Error(); got != "token endpoint answered 400 invalid_grant" {
		t.Fatalf("with a code: %q", got)
	}
}
