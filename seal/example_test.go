package seal_test

import (
	"fmt"
	"log"

	"github.com/tokenkeeper/tokenkeeper"
	"github.com/tokenkeeper/tokenkeeper/seal"
)

func ExampleKeyset_Seal() {
	data, err := seal.Generate() // in production: seal.Load("/etc/tokenkeeper/keyset.json")
	if err != nil {
		log.Fatal(err)
	}
	ks, err := seal.Parse(data)
	if err != nil {
		log.Fatal(err)
	}

	// Bind the ciphertext to connection A's access token.
	ad := tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, "conn-a", tokenkeeper.FieldAccessToken)
	sealed, err := ks.Seal([]byte("access-token"), ad)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("sealed under the primary key:", sealed.KeyID == ks.PrimaryKeyID())

	token, err := ks.Open(sealed, ad)
	fmt.Printf("opened as conn-a's access token: %q, %v\n", token, err)

	// The same ciphertext does not open as another connection's token.
	other := tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, "conn-b", tokenkeeper.FieldAccessToken)
	_, err = ks.Open(sealed, other)
	fmt.Println("opened as conn-b's access token:", err == nil)
	// Output:
	// sealed under the primary key: true
	// opened as conn-a's access token: "access-token", <nil>
	// opened as conn-b's access token: false
}

// Two-phase rotation in a long-running process: add a key and distribute it,
// then promote it. The process swaps each keyset in with Replace.
func ExampleAddKey() {
	data, err := seal.Generate()
	if err != nil {
		log.Fatal(err)
	}
	ks, err := seal.Parse(data)
	if err != nil {
		log.Fatal(err)
	}
	ring := seal.NewKeyring(ks)
	ad := tokenkeeper.AssociatedData(tokenkeeper.SealKindConnection, "conn-a", tokenkeeper.FieldRefreshToken)
	before, err := ring.Seal([]byte("refresh-token"), ad)
	if err != nil {
		log.Fatal(err)
	}

	// Phase 1: add a key. In production, seal.Write the result and have
	// every process load it before phase 2.
	added, newID, err := seal.AddKey(data)
	if err != nil {
		log.Fatal(err)
	}
	ks, err = seal.Parse(added)
	if err != nil {
		log.Fatal(err)
	}
	if err := ring.Replace(ks); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after AddKey, new key seals:", ring.PrimaryKeyID() == newID)

	// Phase 2: promote it.
	promoted, err := seal.Promote(added, newID)
	if err != nil {
		log.Fatal(err)
	}
	ks, err = seal.Parse(promoted)
	if err != nil {
		log.Fatal(err)
	}
	if err := ring.Replace(ks); err != nil {
		log.Fatal(err)
	}
	fmt.Println("after Promote, new key seals:", ring.PrimaryKeyID() == newID)

	_, err = ring.Open(before, ad)
	fmt.Println("value sealed before the rotation opens:", err == nil)
	// Output:
	// after AddKey, new key seals: false
	// after Promote, new key seals: true
	// value sealed before the rotation opens: true
}
