package configrepo

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/sha1" //nolint:gosec // git's pack checksum
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// Object types as a pack's object headers number them.
const (
	packCommit   = 1
	packTree     = 2
	packBlob     = 3
	packTag      = 4
	packOFSDelta = 6
	packREFDelta = 7
)

// dropLargeBlobs stores the pack read from r in st without the blobs larger than limit (and
// the deltas built on them), the way a server applying the filter "blob:limit" would have
// sent it. It is for servers that do not support partial clone: go-git's pack writer holds
// every object it indexes in memory, so a 1 GiB file in the repository would cost a GiB.
//
// The pack streams through: each object's header is read, a blob over limit is inflated into
// a hash and dropped, the rest is copied compressed, as it came, to a spool file in dir (deltas
// get their base offset rewritten); then the spool file gets its object count and checksum and
// go-git indexes it. Memory stays at a few buffers whatever the sizes; the cost of a dropped
// blob is the CPU to inflate and hash it.
//
// It returns the sizes of the dropped blobs it could name (whole blobs; a dropped delta's
// name is not known without its base).
func dropLargeBlobs(r io.Reader, st *filesystem.Storage, limit int64, dir string) (map[plumbing.Hash]int64, error) {
	in := &packReader{r: bufio.NewReaderSize(r, 64<<10), sum: sha1.New()} //nolint:gosec // git's pack checksum
	var head [12]byte
	if _, err := io.ReadFull(in, head[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil // no pack: nothing new
		}
		return nil, fmt.Errorf("reading the pack header: %w", err)
	}
	if !bytes.Equal(head[:4], []byte("PACK")) {
		return nil, fmt.Errorf("reading the pack: not a pack (starts with %q)", head[:4])
	}
	if v := binary.BigEndian.Uint32(head[4:8]); v != 2 && v != 3 {
		return nil, fmt.Errorf("reading the pack: unsupported pack version %d", v)
	}
	count := binary.BigEndian.Uint32(head[8:12])

	spool, err := os.CreateTemp(dir, "fetch-*.pack")
	if err != nil {
		return nil, fmt.Errorf("creating the pack spool file: %w", err)
	}
	defer func() {
		_ = spool.Close()
		_ = os.Remove(spool.Name())
	}()
	out := &offsetWriter{w: bufio.NewWriterSize(spool, 64<<10)}
	if _, err := out.Write(head[:]); err != nil {
		return nil, fmt.Errorf("writing the pack spool file: %w", err)
	}

	type kept struct {
		out int64 // offset in the spool file
		typ int   // resolved type (the base's type for a delta)
	}
	objects := map[int64]kept{}              // by offset in the received pack
	droppedAt := map[int64]bool{}            // offsets of dropped objects
	droppedHash := map[plumbing.Hash]int64{} // hashes of dropped whole blobs, with their sizes
	var keptCount uint32
	for i := uint32(0); i < count; i++ {
		inOff := in.n
		in.sink = nil
		typ, size, hdr, err := readObjectHeader(in)
		if err != nil {
			return nil, fmt.Errorf("reading object %d of the pack: %w", i, err)
		}
		var baseOut int64 = -1
		resolved := typ
		drop := false
		switch typ {
		case packCommit, packTree, packBlob, packTag:
			drop = typ == packBlob && size > limit
		case packOFSDelta:
			rel, err := readOFSOffset(in)
			if err != nil {
				return nil, fmt.Errorf("reading object %d of the pack: %w", i, err)
			}
			base := inOff - rel
			if b, ok := objects[base]; ok {
				baseOut, resolved = b.out, b.typ
			} else if droppedAt[base] {
				drop = true
			} else {
				return nil, fmt.Errorf("reading object %d of the pack: delta base at offset %d not in the pack", i, base)
			}
		case packREFDelta:
			var ref plumbing.Hash
			if _, err := io.ReadFull(in, ref[:]); err != nil {
				return nil, fmt.Errorf("reading object %d of the pack: %w", i, err)
			}
			hdr = append(hdr, ref[:]...)
			// The base is named, not located: a dropped whole blob is recognised; a delta
			// built on a dropped delta is kept, and go-git reports its base missing.
			_, drop = droppedHash[ref]
			resolved = packBlob
		default:
			return nil, fmt.Errorf("reading object %d of the pack: unknown object type %d", i, typ)
		}

		// The compressed data: buffered until it is known whether the object stays.
		var pending bytes.Buffer
		in.sink = &pending
		z, err := zlib.NewReader(in)
		if err != nil {
			return nil, fmt.Errorf("reading object %d of the pack: %w", i, err)
		}
		var content io.Writer = io.Discard
		var blobHash plumbing.Hasher
		if !drop && (typ == packOFSDelta || typ == packREFDelta) {
			// A delta's data starts with the sizes of its base and its result.
			if _, err := readVarint(z); err != nil {
				return nil, fmt.Errorf("reading delta %d of the pack: %w", i, err)
			}
			target, err := readVarint(z)
			if err != nil {
				return nil, fmt.Errorf("reading delta %d of the pack: %w", i, err)
			}
			drop = resolved == packBlob && int64(target) > limit
		}
		if drop && typ == packBlob {
			blobHash = plumbing.NewHasher(plumbing.BlobObject, size)
			content = blobHash
		}
		if drop {
			in.sink = nil
		} else {
			objects[inOff] = kept{out: out.n, typ: resolved}
			keptCount++
			if typ == packOFSDelta {
				hdr = append(hdr, ofsOffset(out.n-baseOut)...)
			}
			if _, err := out.Write(hdr); err != nil {
				return nil, fmt.Errorf("writing the pack spool file: %w", err)
			}
			if _, err := out.Write(pending.Bytes()); err != nil {
				return nil, fmt.Errorf("writing the pack spool file: %w", err)
			}
			in.sink = out
		}
		if _, err := io.Copy(content, z); err != nil {
			return nil, fmt.Errorf("reading object %d of the pack: %w", i, err)
		}
		if err := z.Close(); err != nil {
			return nil, fmt.Errorf("reading object %d of the pack: %w", i, err)
		}
		in.sink = nil
		if out.err != nil {
			return nil, fmt.Errorf("writing the pack spool file: %w", out.err)
		}
		if drop {
			droppedAt[inOff] = true
			if blobHash.Hash != nil {
				droppedHash[blobHash.Sum()] = size
			}
		}
	}
	want := in.sum.Sum(nil)
	var trailer [20]byte
	if _, err := io.ReadFull(in.r, trailer[:]); err != nil {
		return nil, fmt.Errorf("reading the pack checksum: %w", err)
	}
	if !bytes.Equal(trailer[:], want) {
		return nil, errors.New("reading the pack: checksum mismatch (corrupt pack)")
	}

	// Seal the spool file: the count of what was kept, then the checksum of it all.
	if err := out.w.Flush(); err != nil {
		return nil, fmt.Errorf("writing the pack spool file: %w", err)
	}
	binary.BigEndian.PutUint32(head[8:12], keptCount)
	if _, err := spool.WriteAt(head[8:12], 8); err != nil {
		return nil, fmt.Errorf("writing the pack spool file: %w", err)
	}
	sum := sha1.New() //nolint:gosec // git's pack checksum
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading the pack spool file: %w", err)
	}
	if _, err := io.Copy(sum, spool); err != nil {
		return nil, fmt.Errorf("reading the pack spool file: %w", err)
	}
	if _, err := spool.Write(sum.Sum(nil)); err != nil {
		return nil, fmt.Errorf("writing the pack spool file: %w", err)
	}
	if _, err := spool.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("reading the pack spool file: %w", err)
	}
	if err := packfile.UpdateObjectStorage(st, spool); err != nil {
		return nil, fmt.Errorf("storing the pack: %w", err)
	}
	return droppedHash, nil
}

// packReader reads a pack stream, counting and checksumming what it reads and copying it to
// sink when one is set. It is an io.ByteReader, so zlib reads exactly the bytes of one
// object's data and no further.
type packReader struct {
	r    *bufio.Reader
	sum  hash.Hash
	n    int64
	sink io.Writer
}

func (p *packReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	p.consumed(b[:n])
	return n, err
}

func (p *packReader) ReadByte() (byte, error) {
	c, err := p.r.ReadByte()
	if err == nil {
		p.consumed([]byte{c})
	}
	return c, err
}

func (p *packReader) consumed(b []byte) {
	p.sum.Write(b)
	p.n += int64(len(b))
	if p.sink != nil {
		_, _ = p.sink.Write(b) // offsetWriter keeps its error
	}
}

// offsetWriter counts what it writes and keeps the first error.
type offsetWriter struct {
	w   *bufio.Writer
	n   int64
	err error
}

func (o *offsetWriter) Write(b []byte) (int, error) {
	if o.err != nil {
		return 0, o.err
	}
	n, err := o.w.Write(b)
	o.n += int64(n)
	o.err = err
	return n, err
}

// readObjectHeader reads a pack object's type and size, and returns the header's bytes.
func readObjectHeader(r io.ByteReader) (typ int, size int64, raw []byte, err error) {
	c, err := r.ReadByte()
	if err != nil {
		return 0, 0, nil, err
	}
	raw = append(raw, c)
	typ = int(c>>4) & 7
	size = int64(c & 0x0f)
	for shift := uint(4); c&0x80 != 0; shift += 7 {
		if shift > 56 {
			return 0, 0, nil, errors.New("object size overflows")
		}
		if c, err = r.ReadByte(); err != nil {
			return 0, 0, nil, err
		}
		raw = append(raw, c)
		size |= int64(c&0x7f) << shift
	}
	return typ, size, raw, nil
}

// readOFSOffset reads the distance from an OFS_DELTA object back to its base.
func readOFSOffset(r io.ByteReader) (int64, error) {
	c, err := r.ReadByte()
	if err != nil {
		return 0, err
	}
	off := int64(c & 0x7f)
	for c&0x80 != 0 {
		if off > 1<<55 {
			return 0, errors.New("delta offset overflows")
		}
		if c, err = r.ReadByte(); err != nil {
			return 0, err
		}
		off = ((off + 1) << 7) | int64(c&0x7f)
	}
	return off, nil
}

// ofsOffset encodes the distance back to a delta's base as readOFSOffset reads it.
func ofsOffset(off int64) []byte {
	buf := []byte{byte(off & 0x7f)}
	for off >>= 7; off > 0; off >>= 7 {
		off--
		buf = append([]byte{byte(0x80 | off&0x7f)}, buf...)
	}
	return buf
}

// readVarint reads a delta header's size (little-endian base-128).
func readVarint(r io.Reader) (uint64, error) {
	var b [1]byte
	var v uint64
	for shift := uint(0); ; shift += 7 {
		if shift > 63 {
			return 0, errors.New("delta size overflows")
		}
		if _, err := io.ReadFull(r, b[:]); err != nil {
			return 0, err
		}
		v |= uint64(b[0]&0x7f) << shift
		if b[0]&0x80 == 0 {
			return v, nil
		}
	}
}
