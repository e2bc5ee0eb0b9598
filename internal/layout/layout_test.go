package layout

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The limits STYLE.md sets (rule 11) and issue 23 made hard.
const (
	maxFileLines    = 400
	maxFuncLines    = 60
	maxFilesPerType = 4
	maxInboundFiles = 16
	module          = "github.com/mtlsproxy/payrails-mtls-proxy"
	inboundPackage  = module + "/proxy"
)

// source is one non-test Go file of the sidecar's module.
type source struct {
	path string // relative to the module root
	file *ast.File
	fset *token.FileSet
}

// sources parses every non-test Go file of the module, leaving out the
// modules nested in it (a folder with a go.mod of its own) and testdata.
func sources(t *testing.T) []source {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	var out []source
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if p != root && (strings.HasPrefix(name, ".") || name == "testdata" || fileExists(filepath.Join(p, "go.mod"))) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly|parser.ParseComments)
		if err == nil {
			f, err = parser.ParseFile(fset, p, nil, 0)
		}
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, source{path: rel, file: f, fset: fset})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// TestSizes: no file over maxFileLines lines, no function over
// maxFuncLines, no type whose methods spread over more than
// maxFilesPerType files (then it is two concerns: split the type).
func TestSizes(t *testing.T) {
	typeFiles := map[string]map[string]bool{}
	for _, s := range sources(t) {
		if n := s.fset.File(s.file.Pos()).LineCount(); n > maxFileLines {
			t.Errorf("%s has %d lines, more than %d: one concern per file", s.path, n, maxFileLines)
		}
		for _, d := range s.file.Decls {
			fd, ok := d.(*ast.FuncDecl)
			if !ok {
				continue
			}
			if n := s.fset.Position(fd.End()).Line - s.fset.Position(fd.Pos()).Line + 1; n > maxFuncLines {
				t.Errorf("%s: %s has %d lines, more than %d", s.path, fd.Name.Name, n, maxFuncLines)
			}
			if fd.Recv == nil || len(fd.Recv.List) == 0 {
				continue
			}
			typ := fd.Recv.List[0].Type
			if st, ok := typ.(*ast.StarExpr); ok {
				typ = st.X
			}
			if ix, ok := typ.(*ast.IndexExpr); ok {
				typ = ix.X
			}
			if id, ok := typ.(*ast.Ident); ok {
				key := filepath.Dir(s.path) + "." + id.Name
				if typeFiles[key] == nil {
					typeFiles[key] = map[string]bool{}
				}
				typeFiles[key][filepath.Base(s.path)] = true
			}
		}
	}
	for typ, files := range typeFiles {
		if len(files) > maxFilesPerType {
			t.Errorf("type %s has methods in %d files, more than %d: split the type, not the file", typ, len(files), maxFilesPerType)
		}
	}
}

// TestProxySplit: the inbound package stays within maxInboundFiles files,
// and the upstream client (and everything under it) never imports it.
func TestProxySplit(t *testing.T) {
	inbound := 0
	for _, s := range sources(t) {
		dir := filepath.ToSlash(filepath.Dir(s.path))
		if dir == "proxy" {
			inbound++
		}
		if dir != "proxy/upstream" && !strings.HasPrefix(dir, "proxy/upstream/") {
			continue
		}
		for _, imp := range s.file.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == inboundPackage {
				t.Errorf("%s imports the inbound package %s: the upstream client must not", s.path, p)
			}
		}
	}
	if inbound == 0 || inbound > maxInboundFiles {
		t.Errorf("proxy/ has %d non-test files, want 1 to %d", inbound, maxInboundFiles)
	}
}
