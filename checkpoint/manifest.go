package checkpoint

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"io/fs"
	"strconv"
	"strings"
)

// castagnoli is the CRC32C table: hardware-accelerated on amd64 and arm64.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// manifestEnvelope is a manifest as stored: the manifest's JSON and the
// CRC32C of exactly those bytes.
type manifestEnvelope struct {
	CRC32C   *uint32         `json:"crc32c"`
	Manifest json.RawMessage `json:"manifest"`
}

// MarshalManifest encodes m as stored by LocalStorage: a JSON envelope
// {"crc32c": N, "manifest": {...}} where N is the CRC32C of the manifest's
// bytes as they appear in the envelope. Another Storage implementation can
// store manifests in the same form. m is validated first (ValidateManifest).
func MarshalManifest(m *Manifest) ([]byte, error) {
	if err := ValidateManifest(m); err != nil {
		return nil, err
	}
	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("checkpoint: encode manifest of checkpoint %d: %w", m.ID, err)
	}
	// Built by hand so the stored bytes are exactly those checksummed
	// (encoding/json would compact a RawMessage).
	var b bytes.Buffer
	b.Grow(len(body) + 48)
	b.WriteString(`{"crc32c": `)
	b.WriteString(strconv.FormatUint(uint64(crc32.Checksum(body, castagnoli)), 10))
	b.WriteString(",\n\"manifest\": ")
	b.Write(body)
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// UnmarshalManifest decodes what MarshalManifest encoded. A checksum
// mismatch, malformed JSON or an invalid manifest is an error wrapping
// ErrCorrupt; a manifest of another format version is an error too. where
// names the manifest in errors (a path).
func UnmarshalManifest(data []byte, where string) (*Manifest, error) {
	var env manifestEnvelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, fmt.Errorf("%w: manifest %s is not valid JSON: %v", ErrCorrupt, where, err)
	}
	if env.CRC32C == nil || len(env.Manifest) == 0 {
		return nil, fmt.Errorf("%w: manifest %s lacks its crc32c or manifest field", ErrCorrupt, where)
	}
	if got := crc32.Checksum(env.Manifest, castagnoli); got != *env.CRC32C {
		return nil, fmt.Errorf("%w: manifest %s has checksum %08x, expected %08x", ErrCorrupt, where, got, *env.CRC32C)
	}
	var m Manifest
	if err := json.Unmarshal(env.Manifest, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrCorrupt, where, err)
	}
	if m.Version != FormatVersion {
		return nil, fmt.Errorf("checkpoint: manifest %s has format version %d, this build reads version %d", where, m.Version, FormatVersion)
	}
	if err := ValidateManifest(&m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrCorrupt, where, err)
	}
	return &m, nil
}

// ValidateManifest checks that m is well formed: the format version, a kind,
// a positive id, operators sorted by unique names with one SubtaskState per
// subtask, and every file path relative to the storage root inside a
// checkpoint directory (chk-<id>/...). A savepoint's files must all lie in its
// own directory, chk-<m.ID>/.
func ValidateManifest(m *Manifest) error {
	if m == nil {
		return fmt.Errorf("checkpoint: nil manifest")
	}
	if m.Version != FormatVersion {
		return fmt.Errorf("checkpoint: manifest of checkpoint %d has format version %d, want %d", m.ID, m.Version, FormatVersion)
	}
	if m.Kind != KindCheckpoint && m.Kind != KindSavepoint {
		return fmt.Errorf("checkpoint: manifest of checkpoint %d has kind %q, want %q or %q", m.ID, m.Kind, KindCheckpoint, KindSavepoint)
	}
	if m.ID <= 0 {
		return fmt.Errorf("checkpoint: manifest has id %d, ids start at 1", m.ID)
	}
	if m.MaxParallelism < 0 {
		return fmt.Errorf("checkpoint: manifest of checkpoint %d has max parallelism %d", m.ID, m.MaxParallelism)
	}
	for i, o := range m.Operators {
		if o.Name == "" {
			return fmt.Errorf("checkpoint: manifest of checkpoint %d: operator %d has no name", m.ID, i)
		}
		if i > 0 && m.Operators[i-1].Name >= o.Name {
			return fmt.Errorf("checkpoint: manifest of checkpoint %d: operators not sorted by unique name (%q before %q)", m.ID, m.Operators[i-1].Name, o.Name)
		}
		if o.Parallelism < 1 || len(o.Subtasks) != o.Parallelism {
			return fmt.Errorf("checkpoint: manifest of checkpoint %d: operator %q has parallelism %d and %d subtask states", m.ID, o.Name, o.Parallelism, len(o.Subtasks))
		}
	}
	own := checkpointDir(m.ID) + "/"
	for _, f := range m.Files() {
		if err := validRefPath(f.Path); err != nil {
			return fmt.Errorf("checkpoint: manifest of checkpoint %d: %w", m.ID, err)
		}
		if f.Size < 0 {
			return fmt.Errorf("checkpoint: manifest of checkpoint %d: file %s has size %d", m.ID, f.Path, f.Size)
		}
		if m.Kind == KindSavepoint && !strings.HasPrefix(f.Path, own) {
			return fmt.Errorf("checkpoint: savepoint %d references %s outside its own directory %s", m.ID, f.Path, own)
		}
	}
	return nil
}

// FilePath returns the path, relative to a storage's root, of file name of
// checkpoint checkpointID: chk-<checkpointID>/<name>, as every Storage names
// the files it writes (FileRef.Path). It fails if checkpointID is not
// positive or name is not a relative slash-separated path without "." or
// ".." elements and without elements starting with "." (reserved).
func FilePath(checkpointID int64, name string) (string, error) {
	if checkpointID <= 0 {
		return "", fmt.Errorf("checkpoint: create %s: checkpoint id %d, ids start at 1", name, checkpointID)
	}
	if err := validName(name); err != nil {
		return "", err
	}
	return checkpointDir(checkpointID) + "/" + name, nil
}

// FileCheckpoint returns the id of the checkpoint whose directory holds p, a
// FileRef path chk-<id>/<name>, or an error if p is not such a path.
func FileCheckpoint(p string) (int64, error) {
	if err := validRefPath(p); err != nil {
		return 0, err
	}
	return refCheckpoint(p), nil
}

// ManifestPath returns the path, relative to a storage's root, of the
// manifest of checkpoint id: manifests/chk-<id>.json.
func ManifestPath(id int64) string { return manifestName(id) }

// ParseManifestPath returns the id of the manifest at p, a path
// manifests/chk-<id>.json as ManifestPath makes.
func ParseManifestPath(p string) (int64, bool) {
	base, ok := strings.CutPrefix(p, manifestDir+"/")
	if !ok {
		return 0, false
	}
	return parseManifestName(base)
}

// UpdateCRC32C returns the CRC32C (Castagnoli) of the bytes summed into crc
// followed by p, the checksum FileRef.CRC32C holds (start from 0).
func UpdateCRC32C(crc uint32, p []byte) uint32 { return crc32.Update(crc, castagnoli, p) }

// checkpointDir is the directory, relative to the root, of checkpoint id's
// files.
func checkpointDir(id int64) string { return "chk-" + strconv.FormatInt(id, 10) }

// parseCheckpointDir returns the id of a directory named chk-<id>.
func parseCheckpointDir(name string) (int64, bool) {
	s, ok := strings.CutPrefix(name, "chk-")
	if !ok || s == "" || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}

// validName checks a file name given to Create: a relative slash-separated
// path without "." or ".." elements, no element starting with "." (reserved
// for temporary files) and no backslash.
func validName(name string) error {
	if !fs.ValidPath(name) || name == "." || strings.Contains(name, `\`) {
		return fmt.Errorf("checkpoint: invalid file name %q: want a relative slash-separated path without . or .. elements", name)
	}
	for _, el := range strings.Split(name, "/") {
		if strings.HasPrefix(el, ".") {
			return fmt.Errorf("checkpoint: invalid file name %q: elements starting with '.' are reserved", name)
		}
	}
	return nil
}

// validRefPath checks a FileRef path: chk-<id>/<name>.
func validRefPath(p string) error {
	dir, name, ok := strings.Cut(p, "/")
	if !ok {
		return fmt.Errorf("file path %q is not inside a checkpoint directory chk-<id>/", p)
	}
	if _, ok := parseCheckpointDir(dir); !ok {
		return fmt.Errorf("file path %q is not inside a checkpoint directory chk-<id>/", p)
	}
	if err := validName(name); err != nil {
		return fmt.Errorf("file path %q: %w", p, err)
	}
	return nil
}

// refCheckpoint returns the id of the checkpoint whose directory holds path.
func refCheckpoint(p string) int64 {
	dir, _, _ := strings.Cut(p, "/")
	id, _ := parseCheckpointDir(dir)
	return id
}
