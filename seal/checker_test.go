package seal_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

// plaintext is the token every test seals. checker.fail makes sure no error
// quotes it.
const plaintext = "pleo-refresh-token-4Fq9xZ2vL8mN3kR7wT1yB6cD0eH5jP"

// checker checks errors, and remembers the key material it has seen so
// that it can check that no error quotes it either.
type checker struct {
	t       *testing.T
	secrets []string
}

func newChecker(t *testing.T) *checker {
	t.Helper()
	return &checker{t: t, secrets: []string{plaintext}}
}

// sub returns a checker for the subtest t that knows the secrets c knows.
func (c *checker) sub(t *testing.T) *checker {
	return &checker{t: t, secrets: append([]string(nil), c.secrets...)}
}

// record remembers the key material of keyset data and returns data.
func (c *checker) record(data []byte) []byte {
	c.t.Helper()
	var ks struct {
		Key []struct {
			KeyData struct{ Value string }
		}
	}
	if err := json.Unmarshal(data, &ks); err != nil {
		c.t.Fatalf("keyset JSON: %v", err)
	}
	for _, k := range ks.Key {
		c.secrets = append(c.secrets, k.KeyData.Value)
	}
	return data
}

// generate returns new keyset data.
func (c *checker) generate() []byte {
	c.t.Helper()
	data, err := seal.Generate()
	c.ok(err)
	return c.record(data)
}

// parse parses data, which must be valid.
func (c *checker) parse(data []byte) *seal.Keyset {
	c.t.Helper()
	k, err := seal.Parse(c.record(data))
	c.ok(err)
	return k
}

// ok fails the test if err is not nil, after checking it for leaks.
func (c *checker) ok(err error) {
	c.t.Helper()
	c.noLeak(err)
	if err != nil {
		c.t.Fatalf("unexpected error: %v", err)
	}
}

// fail checks that err is an error with code whose text contains want, and
// that it quotes neither the plaintext nor key material.
func (c *checker) fail(err error, code tokenkeeper.Code, want string) {
	c.t.Helper()
	if err == nil {
		c.t.Fatalf("got no error, want %s error containing %q", code, want)
	}
	c.noLeak(err)
	if got := tokenkeeper.ErrorCode(err); got != code {
		c.t.Errorf("code = %q, want %q (error: %v)", got, code, err)
	}
	if !strings.Contains(err.Error(), want) {
		c.t.Errorf("error %q does not contain %q", err, want)
	}
}

func (c *checker) noLeak(err error) {
	c.t.Helper()
	if err == nil {
		return
	}
	texts := []string{err.Error(), fmt.Sprintf("%+v", err), tokenkeeper.ErrorMessage(err)}
	for _, text := range texts {
		for _, s := range c.secrets {
			if s != "" && strings.Contains(text, s) {
				c.t.Errorf("error %q quotes a secret", text)
			}
		}
	}
}

var (
	adAccessA  = tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, "conn-a", tokenkeeper.FieldAccessToken)
	adRefreshA = tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, "conn-a", tokenkeeper.FieldRefreshToken)
	adAccessB  = tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, "conn-b", tokenkeeper.FieldAccessToken)
)
