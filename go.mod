module github.com/tokenkeeper/tokenkeeper

go 1.26.8

require (
	github.com/google/go-cmp v0.7.0
	golang.org/x/oauth2 v0.38.0
)
