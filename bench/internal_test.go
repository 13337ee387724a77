package bench

import (
	"crypto/tls"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{5, 3, 1}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestRotate(t *testing.T) {
	for n, want := range [][]Variant{
		{Untracked, Pgundo, RowLevel, Floor},
		{Pgundo, RowLevel, Floor, Untracked},
		{RowLevel, Floor, Untracked, Pgundo},
		{Floor, Untracked, Pgundo, RowLevel},
		{Untracked, Pgundo, RowLevel, Floor},
	} {
		if got := (&env{variants: Variants}).rotate(n); !slices.Equal(got, want) {
			t.Errorf("rotate(%d) = %v, want %v", n, got, want)
		}
	}
	withEMaj := &env{variants: append(slices.Clone(Variants), EMaj)}
	if got, want := withEMaj.rotate(6), []Variant{Pgundo, RowLevel, Floor, EMaj, Untracked}; !slices.Equal(got, want) {
		t.Errorf("rotate(6) with E-Maj = %v, want %v", got, want)
	}
}

func TestTPSLine(t *testing.T) {
	for _, out := range []string{
		"latency average = 2.6 ms\ninitial connection time = 5.1 ms\ntps = 1523.456789 (without initial connection time)\n",
		"tps = 1000.1 (including connections establishing)\ntps = 1523.456789 (excluding connections establishing)\n",
	} {
		if m := tpsLine.FindStringSubmatch(out); m == nil || m[1] != "1523.456789" {
			t.Errorf("tps of %q: got %v", out, m)
		}
	}
}

func TestSSLMode(t *testing.T) {
	for conn, want := range map[string]string{
		"host=/tmp port=5432 user=u dbname=d":                       "disable",
		"host=db.example port=5432 user=u dbname=d sslmode=disable": "disable",
		"host=db.example port=5432 user=u dbname=d":                 "prefer",
		"host=db.example port=5432 user=u dbname=d sslmode=require": "require",
		"host=db.example port=5432 user=u dbname=d sslmode=allow":   "allow",
	} {
		cfg, err := pgx.ParseConfig(conn)
		if err != nil {
			t.Fatal(err)
		}
		if got := sslMode(cfg); got != want {
			t.Errorf("sslMode(%s) = %s, want %s", conn, got, want)
		}
	}
	cfg := &pgx.ConnConfig{Config: pgconn.Config{Host: "h", Port: 5432, TLSConfig: &tls.Config{ServerName: "h"}}}
	if got := sslMode(cfg); got != "verify-full" {
		t.Errorf("sslMode(verifying TLS) = %s, want verify-full", got)
	}
}

func TestLibpqEnv(t *testing.T) {
	cfg, err := pgx.ParseConfig("host=/tmp/sock port=6543 user=alice dbname=shop password=s3cret sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("PGSERVICE", "prod")
	t.Setenv("PGHOST", "elsewhere")
	env := libpqEnv(cfg)
	for _, kv := range []string{"PGHOST=/tmp/sock", "PGPORT=6543", "PGUSER=alice", "PGDATABASE=shop", "PGPASSWORD=s3cret", "PGSSLMODE=disable"} {
		if !slices.Contains(env, kv) {
			t.Errorf("env lacks %s", kv)
		}
	}
	for _, kv := range []string{"PGSERVICE=prod", "PGHOST=elsewhere"} {
		if slices.Contains(env, kv) {
			t.Errorf("env keeps %s", kv)
		}
	}
}

func TestWithOption(t *testing.T) {
	for _, c := range []struct{ env, want []string }{
		{[]string{"A=1"}, []string{"A=1", "PGOPTIONS=-c x=1"}},
		{[]string{"PGOPTIONS=-c y=2", "A=1"}, []string{"A=1", "PGOPTIONS=-c y=2 -c x=1"}},
		{[]string{"PGOPTIONS="}, []string{"PGOPTIONS=-c x=1"}},
	} {
		if got := withOption(c.env, "-c x=1"); !slices.Equal(got, c.want) {
			t.Errorf("withOption(%q) = %q, want %q", c.env, got, c.want)
		}
	}
}
