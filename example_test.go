package tokenkeeper_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/tokenkeeper/tokenkeeper"
)

func ExampleSecret() {
	token := tokenkeeper.NewSecret("s3cr3t-TOKEN-value")

	// Every way of turning the Secret into text redacts it.
	fmt.Println(token)
	fmt.Printf("%q %x %#v\n", token, token, token)
	b, _ := json.Marshal(struct{ Token tokenkeeper.Secret }{token})
	fmt.Println(string(b))
	log := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{} // keep the output stable
			}
			return a
		},
	}))
	log.Info("refreshed", "refresh_token", token)

	// Reveal is the one way to read it, at the moment it goes on the wire.
	fmt.Println(len(token.Reveal()))
	// Output:
	// [REDACTED]
	// "[REDACTED]" [REDACTED] tokenkeeper.Secret{[REDACTED]}
	// {"Token":"[REDACTED]"}
	// level=INFO msg=refreshed refresh_token=[REDACTED]
	// 18
}

func ExampleErrorCode() {
	grantDead := errors.New(`oauth2: "invalid_grant"`)
	err := tokenkeeper.Errorf(tokenkeeper.CodeReconnectRequired, "refresh connection %s: %w", "c1", grantDead)
	err2 := fmt.Errorf("serve token: %w", err)

	fmt.Println(tokenkeeper.ErrorCode(err2))         // for the HTTP status
	fmt.Println(tokenkeeper.ErrorMessage(err2))      // for the user
	fmt.Println(err2)                                // for the log
	fmt.Println(errors.Is(err2, grantDead))          // the cause stays reachable
	fmt.Println(tokenkeeper.ErrorCode(grantDead))    // not an *Error: internal
	fmt.Println(tokenkeeper.ErrorMessage(grantDead)) // and users see nothing of it
	// Output:
	// reconnect_required
	// refresh connection c1
	// serve token: refresh connection c1: oauth2: "invalid_grant"
	// true
	// internal
	// internal error
}
