package contract

import (
	"slices"
	"testing"
)

const sample = `// a comment with 'quotes' and { braces
targetScope = 'resourceGroup'

@description('''
A multi-line description with ${not interpolation} and 'quotes'.
''')
@minValue(1)
param count int = 2

param names string[] = [
  'a'
  'b'
]

/* block
   comment */
var prefix = 'kv-${toLower('X')}-{}'
var settings = {
  PLAIN: 'value'
  'quoted-key': count == 2 ? 'two' : 'other'
  INTERP: '${prefix}x'
  inline: { a: 1, b: 'c' }
}
var extra = flag ? {
  ONLY_IF: 'x'
} : {}
var items = map(names, n => {
  name: n
})

resource st 'Microsoft.Storage/storageAccounts@2024-01-01' = {
  name: 'st'
  properties: {
    minimumTlsVersion: 'TLS1_2'
  }
  resource blob 'blobServices@2024-01-01' = {
    name: 'default'
  }
}

resource old 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: 'kv'
}

resource many 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (n, i) in names: if (count > 1) {
    name: guid(n)
    scope: st
    properties: {
      principalId: n
    }
  }
]

module m 'modules/x.bicep' = {
  name: 'm'
  params: {
    a: union(settings, {
      B: 'b'
    })
  }
}

output o string = st.properties.primaryEndpoints.blob
`

func TestParseSample(t *testing.T) {
	f, err := Parse("sample.bicep", sample)
	if err != nil {
		t.Fatal(err)
	}
	if d := f.Find("param", "count"); d == nil || d.Type != "int" || d.Value.Text != "2" {
		t.Fatalf("param count: %+v", d)
	}
	if d := f.Find("param", "names"); d == nil || len(d.Value.Array) != 2 {
		t.Fatalf("param names: %+v", d)
	} else if s, _ := d.Value.Array[1].Literal(); s != "b" {
		t.Errorf("names[1] = %q", s)
	}
	if v := f.Find("var", "prefix").Value; v.Text != "'kv-${toLower('X')}-{}'" {
		t.Errorf("prefix text %q", v.Text)
	} else if _, ok := v.Literal(); ok {
		t.Error("an interpolated string is not a literal")
	}
	settings := f.Find("var", "settings").Value.Object
	if got := settings.Keys(); !slices.Equal(got, []string{"PLAIN", "quoted-key", "INTERP", "inline"}) {
		t.Errorf("settings keys %v", got)
	}
	if got := settings.Get("quoted-key").Text; got != "count == 2 ? 'two' : 'other'" {
		t.Errorf("ternary text %q", got)
	}
	if got := settings.Path("inline", "b"); got == nil || got.Text != "'c'" {
		t.Errorf("single-line object: %v", got)
	}
	extra := f.Find("var", "extra").Value
	if extra.Object != nil || len(extra.Inner) != 2 || extra.Inner[0].Keys()[0] != "ONLY_IF" {
		t.Errorf("ternary of objects: %+v", extra)
	}
	if items := f.Find("var", "items").Value; len(items.Inner) != 1 || items.Inner[0].Keys()[0] != "name" {
		t.Errorf("lambda body: %+v", items)
	}

	rs := f.Resources()
	var types []string
	for _, r := range rs {
		types = append(types, r.Type)
	}
	want := []string{"Microsoft.Storage/storageAccounts@2024-01-01", "blobServices@2024-01-01", "Microsoft.KeyVault/vaults@2023-07-01", "Microsoft.Authorization/roleAssignments@2022-04-01"}
	if !slices.Equal(types, want) {
		t.Errorf("resources %v", types)
	}
	if !f.Find("resource", "old").Existing {
		t.Error("existing not seen")
	}
	many := f.Find("resource", "many")
	if b := many.Body(); b == nil || b.Get("scope").Text != "st" || b.Path("properties", "principalId").Text != "n" {
		t.Errorf("loop body: %+v", b)
	}
	if got := one(t, f, "Microsoft.Storage/storageAccounts").Body().Path("properties", "minimumTlsVersion"); got.Text != "'TLS1_2'" {
		t.Errorf("nested path %v", got)
	}
	m := f.Find("module", "m")
	if m.Type != "modules/x.bicep" {
		t.Errorf("module path %q", m.Type)
	}
	a := m.Body().Path("params", "a")
	if len(a.Inner) != 1 || a.Inner[0].Keys()[0] != "B" || !slices.Contains(a.Identifiers(), "settings") {
		t.Errorf("union argument: %+v", a)
	}
	if o := f.Find("output", "o"); o == nil || o.Type != "string" || o.Value.Text != "st.properties.primaryEndpoints.blob" {
		t.Errorf("output: %+v", o)
	}
}

func TestParseErrors(t *testing.T) {
	for _, src := range []string{
		"var x = {\n  a: 1\n",   // unterminated object
		"var x = 'abc\n",        // unterminated string
		"var x = [\n  1\n",      // unterminated array
		"var x = '${a'\n",       // unterminated interpolation
		"/* never closed",       // comment
		"var x = {\n  : 1\n}\n", // no key
		"resource r 'T@v' {}\n", // no '='
	} {
		if _, err := Parse("bad.bicep", src); err == nil {
			t.Errorf("no error for %q", src)
		}
	}
}
