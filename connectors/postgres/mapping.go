package postgres

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	"unicode"
)

// column is a struct field and the column it maps to.
type column struct {
	name  string       // column name
	field string       // Go field path, for messages ("Order.Qty")
	index []int        // reflect field index
	typ   reflect.Type // field type
	key   bool
}

// tableMapping is how a struct type maps onto a table.
type tableMapping struct {
	table tableName
	typ   reflect.Type
	cols  []column
	keys  []int // indexes into cols
}

func (m *tableMapping) colNames() []string {
	names := make([]string, len(m.cols))
	for i, c := range m.cols {
		names[i] = c.name
	}
	return names
}

func (m *tableMapping) keyNames() []string {
	names := make([]string, len(m.keys))
	for i, k := range m.keys {
		names[i] = m.cols[k].name
	}
	return names
}

// mapStruct maps the fields of T to columns; extraKeys are key columns named
// in the configuration.
func mapStruct[T any](table tableName, extraKeys []string) (*tableMapping, error) {
	t := reflect.TypeFor[T]()
	if t.Kind() != reflect.Struct {
		return nil, fmt.Errorf("record type %s is not a struct", t)
	}
	m := &tableMapping{table: table, typ: t}
	if err := m.addFields(t, nil, ""); err != nil {
		return nil, err
	}
	if len(m.cols) == 0 {
		return nil, fmt.Errorf("record type %s has no exported fields to write", t)
	}
	for _, k := range extraKeys {
		i := slices.IndexFunc(m.cols, func(c column) bool { return c.name == k })
		if i < 0 {
			return nil, fmt.Errorf("key column %q is no field of %s (columns: %s)", k, t, strings.Join(m.colNames(), ", "))
		}
		m.cols[i].key = true
	}
	for i, c := range m.cols {
		if c.key {
			m.keys = append(m.keys, i)
		}
	}
	return m, nil
}

func (m *tableMapping) addFields(t reflect.Type, index []int, prefix string) error {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("db")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "-" && opts == "" {
			continue
		}
		idx := append(slices.Clone(index), i)
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Struct && ft != timeType {
				if err := m.addFields(ft, idx, prefix+f.Name+"."); err != nil {
					return err
				}
				continue
			}
			if ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct {
				return fmt.Errorf("embedded pointer field %s%s: name its column with a db tag or embed the struct by value", prefix, f.Name)
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = snakeCase(f.Name)
		}
		c := column{name: name, field: prefix + f.Name, index: idx, typ: f.Type}
		for o := range strings.SplitSeq(opts, ",") {
			switch o {
			case "":
			case "key":
				c.key = true
			default:
				return fmt.Errorf("field %s%s: unknown db tag option %q", prefix, f.Name, o)
			}
		}
		if j := slices.IndexFunc(m.cols, func(o column) bool { return o.name == name }); j >= 0 {
			return fmt.Errorf("fields %s and %s%s both map to column %q", m.cols[j].field, prefix, f.Name, name)
		}
		m.cols = append(m.cols, c)
	}
	return nil
}

// snakeCase turns a Go field name into a column name: UserID → user_id,
// HTTPServer → http_server.
func snakeCase(s string) string {
	rs := []rune(s)
	var b strings.Builder
	for i, r := range rs {
		if unicode.IsUpper(r) {
			if i > 0 {
				prev := rs[i-1]
				nextLower := i+1 < len(rs) && unicode.IsLower(rs[i+1])
				if unicode.IsLower(prev) || unicode.IsDigit(prev) || (unicode.IsUpper(prev) && nextLower) {
					b.WriteByte('_')
				}
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

var (
	timeType    = reflect.TypeFor[time.Time]()
	bytesType   = reflect.TypeFor[[]byte]()
	rawJSONType = reflect.TypeFor[json.RawMessage]()
)

// ColumnType is the Postgres type CreateTable gives a field of Go type t, and
// whether the column may hold NULL: integers map to smallint, integer or
// bigint (uint64 to numeric(20)), floats to real or double precision, string
// to text, bool to boolean, time.Time to timestamptz, []byte to bytea,
// json.RawMessage and every other type to jsonb. A pointer maps like its
// element and is nullable; so are slices, maps and interfaces.
func ColumnType(t reflect.Type) (sqlType string, nullable bool) {
	if t.Kind() == reflect.Pointer {
		s, _ := ColumnType(t.Elem())
		return s, true
	}
	switch t {
	case timeType:
		return "timestamptz", false
	case rawJSONType:
		return "jsonb", true
	}
	switch t.Kind() {
	case reflect.Bool:
		return "boolean", false
	case reflect.Int8, reflect.Int16, reflect.Uint8:
		return "smallint", false
	case reflect.Int32, reflect.Uint16:
		return "integer", false
	case reflect.Int, reflect.Int64, reflect.Uint32:
		return "bigint", false
	case reflect.Uint, reflect.Uint64:
		return "numeric(20)", false
	case reflect.Float32:
		return "real", false
	case reflect.Float64:
		return "double precision", false
	case reflect.String:
		return "text", false
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return "bytea", true
		}
	}
	return "jsonb", true
}

// createTableSQL is the CREATE TABLE IF NOT EXISTS statement for m.
func (m *tableMapping) createTableSQL() string {
	var b strings.Builder
	b.WriteString("CREATE TABLE IF NOT EXISTS ")
	b.WriteString(m.table.String())
	b.WriteString(" (\n")
	for i, c := range m.cols {
		typ, nullable := ColumnType(c.typ)
		fmt.Fprintf(&b, "    %s %s", quoteIdent(c.name), typ)
		if !nullable || c.key {
			b.WriteString(" NOT NULL")
		}
		if i < len(m.cols)-1 || len(m.keys) > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	if len(m.keys) > 0 {
		b.WriteString("    PRIMARY KEY (")
		b.WriteString(joinIdents(m.keyNames()))
		b.WriteString(")\n")
	}
	b.WriteString(")")
	return b.String()
}

func joinIdents(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quoteIdent(n)
	}
	return strings.Join(q, ", ")
}

// CreateTableSQL returns the statement CreateTable runs for cfg (the table is
// only created if it does not exist).
func CreateTableSQL[T any](cfg Config[T]) (string, error) {
	m, err := cfg.withDefaults().plan()
	if err != nil {
		return "", err
	}
	return m.createTableSQL(), nil
}
