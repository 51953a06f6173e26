package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/tokenkeeper/tokenkeeper"
)

// Client calls a tokenkeeper server's HTTP API. Its methods mirror the
// routes, and each error is a *tokenkeeper.Error rebuilt from the response:
// the server's code and message (an HTTP-layer code reads as
// [tokenkeeper.CodeInvalid]), or, for a response without an error body,
// the code nearest its status. A request that gets no response fails with
// [tokenkeeper.CodeUnavailable] wrapping the transport's error (and ctx's,
// for errors.Is). A Client is safe for concurrent use once its fields are
// set; the zero value has no BaseURL and fails every call with
// CodeInvalid.
type Client struct {
	// BaseURL is the server's URL, with an optional path prefix
	// ("https://tokenkeeper.internal" or "https://gw.example/tk").
	BaseURL *url.URL
	// APIKey is sent as "Authorization: Bearer <key>" with every call.
	APIKey tokenkeeper.Secret
	// HTTPClient sends the requests; nil means http.DefaultClient.
	HTTPClient *http.Client
}

// maxResponseBytes bounds what the client reads of a response.
const maxResponseBytes = 16 << 20

// do sends a request to path (escaped, from the API's root), with query and
// a JSON body if body is not nil, and decodes a 2xx response into out.
func (c *Client) do(ctx context.Context, method, path string, query url.Values, body, out any) error {
	if c.BaseURL == nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "httpapi client: BaseURL is not set")
	}
	target := strings.TrimSuffix(c.BaseURL.String(), "/") + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	var reader io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "httpapi client: encode request: %w", err)
		}
		reader = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, reader)
	if err != nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeInvalid, "httpapi client: build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey.Reveal())
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "%s %s: %w", method, c.BaseURL.Redacted(), err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeUnavailable, "%s %s: read response: %w", method, c.BaseURL.Redacted(), err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return responseError(resp.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return tokenkeeper.Errorf(tokenkeeper.CodeInternal, "httpapi client: the server's %d response is not the expected JSON: %w",
			resp.StatusCode, err)
	}
	return nil
}

// responseError rebuilds the error of a non-2xx response.
func responseError(status int, body []byte) error {
	var eb ErrorBody
	if json.Unmarshal(body, &eb) == nil && eb.Error.Code != "" {
		code := eb.Error.Code
		switch {
		case code == CodeTooLarge || code == CodeMethodNotAllowed || code == CodeUnsupportedMediaType:
			code = tokenkeeper.CodeInvalid
		case !code.Valid():
			code = statusCode(status)
		}
		return &tokenkeeper.Error{Code: code, Message: eb.Error.Message}
	}
	return &tokenkeeper.Error{Code: statusCode(status),
		Message: fmt.Sprintf("the server answered %d %s", status, http.StatusText(status))}
}

// statusCode is the code nearest a status, for responses without a code.
func statusCode(status int) tokenkeeper.Code {
	switch status {
	case http.StatusNotFound:
		return tokenkeeper.CodeNotFound
	case http.StatusUnauthorized:
		return tokenkeeper.CodeUnauthorized
	case http.StatusForbidden:
		return tokenkeeper.CodeForbidden
	case http.StatusConflict:
		return tokenkeeper.CodeConflict
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout, http.StatusTooManyRequests:
		return tokenkeeper.CodeUnavailable
	}
	if status >= 400 && status < 500 {
		return tokenkeeper.CodeInvalid
	}
	return tokenkeeper.CodeInternal
}

// segment escapes one path segment. Dots alone are escaped too: a client or
// proxy on the way would otherwise resolve "." and ".." away.
func segment(s string) string {
	if s == "." || s == ".." {
		return strings.ReplaceAll(s, ".", "%2E")
	}
	return url.PathEscape(s)
}
