package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// privatePG is a PostgreSQL server of one test's own, in a temporary directory, so that
// the test may stop and restart it: the machine's shared server is in use by other test
// packages at the same time.
type privatePG struct {
	t    *testing.T
	bin  string // the directory holding initdb and pg_ctl
	dir  string // owned by the server's user
	data string
	port int
	// asUser, if set, runs the server's commands as that user (initdb refuses root).
	asUser string
}

// startPrivatePG initialises and starts a private server (trust authentication,
// fsync off) on a free loopback port, stopped and removed when t ends. It skips t when
// PostgreSQL's server binaries are absent, unless CI is true.
func startPrivatePG(t *testing.T) *privatePG {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if dir := os.Getenv("TOKENKEEPER_TEST_POSTGRES_BIN"); dir != "" {
		bins = []string{filepath.Join(dir, "initdb")}
	}
	slices.SortFunc(bins, func(a, b string) int { return pgMajor(b) - pgMajor(a) })
	if len(bins) == 0 {
		msg := "PostgreSQL's server binaries (initdb, pg_ctl) are not in /usr/lib/postgresql/*/bin; install the server or set TOKENKEEPER_TEST_POSTGRES_BIN"
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatal(msg + " (CI is true: not skipping)")
		}
		t.Skip(msg)
	}
	pg := &privatePG{t: t, bin: filepath.Dir(bins[0])}
	dir, err := os.MkdirTemp("", "tokenkeeper-pg-")
	if err != nil {
		t.Fatal(err)
	}
	pg.dir, pg.data = dir, filepath.Join(dir, "data")
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		// initdb refuses to run as root: the server runs as the postgres user, in a
		// directory that user owns.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("running as root, and there is no postgres user to run a private PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
		pg.asUser = "postgres"
	}
	pg.run("initdb", "-D", pg.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync", "--locale=C")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pg.port = ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	pg.start()
	t.Cleanup(func() { pg.ctl("stop", "-m", "immediate") })
	return pg
}

func pgMajor(initdb string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(initdb))))
	return n
}

// url is the server's maintenance database.
func (pg *privatePG) url() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", pg.port)
}

func (pg *privatePG) command(name string, args ...string) *exec.Cmd {
	path := filepath.Join(pg.bin, name)
	if pg.asUser != "" {
		return exec.Command("runuser", append([]string{"-u", pg.asUser, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

func (pg *privatePG) run(name string, args ...string) {
	pg.t.Helper()
	out, err := pg.command(name, args...).CombinedOutput()
	if err != nil {
		pg.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// ctl runs pg_ctl and waits for it; an error is returned, not fatal, for cleanups.
func (pg *privatePG) ctl(args ...string) error {
	args = append(append([]string{}, args...), "-D", pg.data, "-w", "-t", "60")
	out, err := pg.command("pg_ctl", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// start starts the server and waits until it accepts connections.
func (pg *privatePG) start() {
	pg.t.Helper()
	opts := fmt.Sprintf("-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100",
		pg.port, pg.dir)
	began := time.Now()
	if err := pg.ctl("start", "-l", filepath.Join(pg.dir, "server.log"), "-o", opts); err != nil {
		log, _ := os.ReadFile(filepath.Join(pg.dir, "server.log"))
		pg.t.Fatalf("%v\nserver log:\n%s", err, log)
	}
	pg.t.Logf("private PostgreSQL on port %d started in %s", pg.port, time.Since(began).Round(time.Millisecond))
}

// stop stops the server the way an orchestrator would (fast shutdown: clients are
// disconnected, and the server refuses new ones until it is started again).
func (pg *privatePG) stop() {
	pg.t.Helper()
	if err := pg.ctl("stop", "-m", "fast"); err != nil {
		pg.t.Fatal(err)
	}
}
