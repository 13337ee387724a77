package history_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/pgundo/pgundo/history"
)

func TestParseImage(t *testing.T) {
	s := func(v string) *string { return &v }
	for _, c := range []struct {
		img  string
		want []*string
	}{
		{`(1)`, []*string{s("1")}},
		{`()`, []*string{nil}},
		{`(,)`, []*string{nil, nil}},
		{`(1,,"")`, []*string{s("1"), nil, s("")}},
		{`(1,"a b","a,b")`, []*string{s("1"), s("a b"), s("a,b")}},
		{`("say ""hi""","back\\slash")`, []*string{s(`say "hi"`), s(`back\slash`)}},
		{`("{1,2}","(1,""x y"")")`, []*string{s("{1,2}"), s(`(1,"x y")`)}},
		{"(\"line\nbreak\",x)", []*string{s("line\nbreak"), s("x")}},
		{`(a"b"c,\,)`, []*string{s("abc"), s(",")}},
		{`(ünï,"")`, []*string{s("ünï"), s("")}},
	} {
		got, err := history.ParseImage(c.img)
		require.NoError(t, err, c.img)
		require.Equal(t, c.want, got, c.img)
	}
	for _, bad := range []string{``, `1,2`, `(1,"x)`, `(1\)`} {
		_, err := history.ParseImage(bad)
		require.Error(t, err, bad)
	}
}

func ExampleParseImage() {
	fields, _ := history.ParseImage(`(42,"it's ""fragile""",,"")`)
	for _, f := range fields {
		if f == nil {
			fmt.Println("NULL")
			continue
		}
		fmt.Printf("%q\n", *f)
	}
	// Output:
	// "42"
	// "it's \"fragile\""
	// NULL
	// ""
}
