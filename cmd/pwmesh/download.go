package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/cas"
	"github.com/pwmesh/pwmesh/web/client"
)

// verifiedDownload is one resumable download into a file whose SHA-256 is
// known beforehand: a RunBundle or a dataset.
type verifiedDownload struct {
	id     string // what get fetches
	get    func(ctx context.Context, id string, offset int64, w io.Writer, p client.Progress, opts ...client.DownloadOption) (etag string, n int64, err error)
	out    string // the file to write
	what   string // for messages: "bundle of job j1"
	owner  string // who recorded sha256, for messages: "the job"
	desc   string // the progress bar's label
	sha256 string // hex SHA-256 of the whole file
	size   int64  // bytes of the whole file
	etag   string // the object's ETag (its CID, unquoted): a resume asks If-Range with it
}

// download fetches d into d.out through d.out+".part", resuming a partial
// download (If-Range, so a changed object starts again from 0), and checks
// the whole file's SHA-256 before renaming it into place. On a mismatch the
// .part is deleted and nothing is written to d.out.
func (a *app) download(ctx context.Context, d verifiedDownload) (cas.Ref, error) {
	if dir := filepath.Dir(d.out); dir != "." {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return cas.Ref{}, fmt.Errorf("output directory %s does not exist", dir)
		}
	}
	part := d.out + ".part"
	f, err := os.OpenFile(part, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return cas.Ref{}, err
	}
	defer f.Close() // after the explicit Close below, a no-op
	st, err := f.Stat()
	if err != nil {
		return cas.Ref{}, err
	}
	h := cas.NewHasher()
	offset := st.Size()
	if offset > 0 && offset < d.size {
		// Resume: hash what is there, append the rest.
		if _, err := io.CopyN(h, f, offset); err != nil {
			return cas.Ref{}, fmt.Errorf("read partial download %s: %w", part, err)
		}
	} else if offset > 0 {
		if h, err = restart(f); err != nil {
			return cas.Ref{}, err
		}
		offset = 0
	}
	resumed := offset

	bar := a.newProgress(d.desc)
	_, n, err := d.get(ctx, d.id, offset, io.MultiWriter(f, h), bar.fn(), client.IfRange(d.etag))
	if errors.Is(err, client.ErrChanged) {
		fmt.Fprintf(a.stderr, "%s changed since %s was written; downloading it again from the start\n", d.what, part)
		if h, err = restart(f); err != nil {
			return cas.Ref{}, err
		}
		offset, resumed = 0, 0
		_, n, err = d.get(ctx, d.id, 0, io.MultiWriter(f, h), bar.fn())
	}
	bar.done(err == nil)
	if err != nil {
		f.Close()
		if offset+n == 0 {
			_ = os.Remove(part)
		} else {
			err = fmt.Errorf("%w (kept %s; run the command again to resume)", err, part)
		}
		return cas.Ref{}, err
	}
	got := h.Ref()
	if got.SHA256 != d.sha256 {
		f.Close()
		_ = os.Remove(part)
		err := fmt.Errorf("%s: sha256 mismatch: downloaded %s, %s says %s; nothing was written to %s",
			d.what, got.SHA256, d.owner, d.sha256, d.out)
		if resumed > 0 {
			err = fmt.Errorf("%w (the first %d bytes came from an earlier partial download, now deleted: run the command again to download from the start)", err, resumed)
		}
		return cas.Ref{}, err
	}
	if err := f.Sync(); err != nil {
		return cas.Ref{}, err
	}
	if err := f.Close(); err != nil {
		return cas.Ref{}, err
	}
	if err := os.Rename(part, d.out); err != nil {
		return cas.Ref{}, err
	}
	return got, nil
}

// restart empties a partial download and returns a fresh hasher for it.
func restart(f *os.File) (*cas.Hasher, error) {
	if err := f.Truncate(0); err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return cas.NewHasher(), nil
}

// downloadCmd completes c, whose Use, Short and Long are set, into a
// command that downloads the object its one argument, ID, names to a file
// and prints where it went: describe looks the object up and says what to
// fetch, its out being the default file (outHelp in the help), which -o
// replaces.
func (a *app) downloadCmd(c *cobra.Command, outHelp string, describe func(ctx context.Context, cl *client.Client, id string) (verifiedDownload, error)) *cobra.Command {
	var out string
	c.Args = args("ID")
	c.RunE = func(cmd *cobra.Command, args []string) error {
		d, err := describe(cmd.Context(), a.client(), args[0])
		if err != nil {
			return err
		}
		if out != "" {
			d.out = out
		}
		ref, err := a.download(cmd.Context(), d)
		if err != nil {
			return err
		}
		if a.json {
			return a.printJSON(map[string]any{"path": d.out, "cid": ref.CID.String(), "sha256": ref.SHA256, "size": ref.Size})
		}
		_, err = fmt.Fprintf(a.stdout, "%s\ncid %s (sha256:%s, %s)\n", d.out, ref.CID, ref.SHA256, humanBytes(ref.Size))
		return err
	}
	c.Flags().StringVarP(&out, "output", "o", "", "file to write (default "+outHelp+")")
	return c
}
