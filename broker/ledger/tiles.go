package ledger

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/stewardhq/steward/broker"
	"golang.org/x/mod/sumdb/tlog"
)

// TilePath returns the c2sp.org/tlog-tiles path of the Merkle tile at
// level and index, such as "tile/0/x001/x234/067.p/8". A width of
// TileWidth names the full tile; 1 to TileWidth-1 a partial one.
//
// These paths differ from tlog.Tile.Path: they have no height element.
func TilePath(level int, index int64, width int) string {
	return "tile/" + strconv.Itoa(level) + "/" + indexPath(index, width)
}

// EntriesPath returns the c2sp.org/tlog-tiles path of the entry bundle
// holding entries [index*256, index*256+width), such as
// "tile/entries/x001/x234/067".
func EntriesPath(index int64, width int) string {
	return "tile/entries/" + indexPath(index, width)
}

// indexPath encodes n in groups of three digits, all but the last with an
// x prefix, and adds ".p/<width>" for a partial tile.
func indexPath(n int64, width int) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/%s", n%1000, s)
	}
	if width < TileWidth {
		s += ".p/" + strconv.Itoa(width)
	}
	return s
}

// TileRef names one tile or entry bundle; Level is -1 for an entry bundle.
type TileRef struct {
	Level int
	Index int64
	Width int
}

// Path returns the tile's c2sp.org/tlog-tiles path.
func (t TileRef) Path() string {
	if t.Level < 0 {
		return EntriesPath(t.Index, t.Width)
	}
	return TilePath(t.Level, t.Index, t.Width)
}

// ParseTilePath parses a tile or entry bundle path as written by TilePath
// or EntriesPath, refusing any other spelling of the same tile.
func ParseTilePath(path string) (TileRef, error) {
	bad := fmt.Errorf("%w: tile path %q", broker.ErrInvalid, path)
	rest, ok := strings.CutPrefix(path, "tile/")
	if !ok {
		return TileRef{}, bad
	}
	lvl, rest, ok := strings.Cut(rest, "/")
	if !ok {
		return TileRef{}, bad
	}
	t := TileRef{Level: -1, Width: TileWidth}
	if lvl != "entries" {
		l, err := strconv.Atoi(lvl)
		if err != nil || l < 0 || l > 63 || strconv.Itoa(l) != lvl {
			return TileRef{}, bad
		}
		t.Level = l
	}
	if idx, w, ok := strings.Cut(rest, ".p/"); ok {
		width, err := strconv.Atoi(w)
		if err != nil || width < 1 || width >= TileWidth || strconv.Itoa(width) != w {
			return TileRef{}, bad
		}
		t.Width, rest = width, idx
	}
	var n int64
	elems := strings.Split(rest, "/")
	for i, e := range elems {
		if i < len(elems)-1 {
			var ok bool
			if e, ok = strings.CutPrefix(e, "x"); !ok {
				return TileRef{}, bad
			}
		}
		if len(e) != 3 || e[0] < '0' || e[0] > '9' || e[1] < '0' || e[1] > '9' || e[2] < '0' || e[2] > '9' {
			return TileRef{}, bad
		}
		d, _ := strconv.Atoi(e)
		if n > (1<<63-1-999)/1000 {
			return TileRef{}, bad
		}
		n = n*1000 + int64(d)
	}
	t.Index = n
	if t.Path() != path {
		return TileRef{}, bad
	}
	return t, nil
}

// MarshalEntryBundle encodes entries as a c2sp.org/tlog-tiles entry
// bundle: each entry prefixed by its length as a big-endian uint16.
func MarshalEntryBundle(entries [][]byte) ([]byte, error) {
	n := 0
	for _, e := range entries {
		if len(e) > broker.MaxEntryBytes {
			return nil, fmt.Errorf("%w: entry of %d bytes does not fit a bundle", broker.ErrInvalid, len(e))
		}
		n += 2 + len(e)
	}
	b := make([]byte, 0, n)
	for _, e := range entries {
		b = binary.BigEndian.AppendUint16(b, uint16(len(e)))
		b = append(b, e...)
	}
	return b, nil
}

// ParseEntryBundle decodes an entry bundle. It refuses truncated data.
func ParseEntryBundle(b []byte) ([][]byte, error) {
	var entries [][]byte
	for len(b) > 0 {
		if len(b) < 2 {
			return nil, fmt.Errorf("%w: entry bundle ends inside a length prefix", broker.ErrInvalid)
		}
		n := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+n {
			return nil, fmt.Errorf("%w: entry bundle ends inside entry %d", broker.ErrInvalid, len(entries))
		}
		entries = append(entries, b[2:2+n:2+n])
		b = b[2+n:]
	}
	return entries, nil
}

// available returns how many hashes (or entries, for level -1) of tile
// index are in a tree of size size: 0 if none, TileWidth if it is full.
func available(level int, index, size int64) int {
	if level < 0 {
		level = 0
	}
	n := size >> (TileHeight * level)
	start := index * TileWidth
	switch {
	case n <= start:
		return 0
	case n-start >= TileWidth:
		return TileWidth
	default:
		return int(n - start)
	}
}

// ReadTile returns the contents of tile t of the tree of size size:
// the hashes of a Merkle tile, or the entry bundle for level -1. It
// refuses, with broker.ErrNotFound, a tile that the tree does not have
// at the width asked.
func ReadTile(ctx context.Context, r Reader, size int64, t TileRef) ([]byte, error) {
	if t.Level > 63 || t.Index < 0 || t.Width < 1 || t.Width > TileWidth || t.Index > (1<<62)/TileWidth {
		return nil, fmt.Errorf("%w: tile %s", broker.ErrInvalid, t.Path())
	}
	if available(t.Level, t.Index, size) < t.Width {
		return nil, fmt.Errorf("tile %s beyond tree size %d: %w", t.Path(), size, broker.ErrNotFound)
	}
	if t.Level < 0 {
		entries, err := r.ReadLeaves(ctx, t.Index*TileWidth, t.Width)
		if err != nil {
			return nil, fmt.Errorf("read entry bundle %s: %w", t.Path(), err)
		}
		return MarshalEntryBundle(entries)
	}
	tile := tlog.Tile{H: TileHeight, L: t.Level, N: t.Index, W: t.Width}
	data, err := tlog.ReadTileData(tile, hashReader(ctx, r))
	if err != nil {
		return nil, fmt.Errorf("read tile %s: %w", t.Path(), err)
	}
	return data, nil
}

// hashReader adapts a Reader to tlog.HashReader for one request.
func hashReader(ctx context.Context, r Reader) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return r.ReadHashes(ctx, indexes)
	})
}

// Tiles lists every tile and entry bundle of the tree of size size: full
// ones and the rightmost partial one at each level.
func Tiles(size int64) []TileRef {
	var refs []TileRef
	for _, t := range tlog.NewTiles(TileHeight, 0, size) {
		refs = append(refs, TileRef{Level: t.L, Index: t.N, Width: t.W})
		if t.L == 0 {
			refs = append(refs, TileRef{Level: -1, Index: t.N, Width: t.W})
		}
	}
	return refs
}
