package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pwmesh/pwmesh/scheduler"
	"github.com/pwmesh/pwmesh/web/client"
)

func (a *app) datasetCmd() *cobra.Command {
	c := groupCmd("dataset", "Upload and manage datasets")
	c.AddCommand(a.datasetUploadCmd(), a.datasetDownloadCmd(), a.datasetListCmd(), a.datasetGetCmd(), a.datasetRmCmd())
	return c
}

func (a *app) datasetUploadCmd() *cobra.Command {
	var name string
	c := &cobra.Command{
		Use:   "upload FILE",
		Short: "Upload a file as a dataset and print its id",
		Args:  args("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			f, err := os.Open(path)
			if err != nil {
				return err
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				return err
			}
			if !st.Mode().IsRegular() {
				return fmt.Errorf("%s is not a regular file", path)
			}
			if name == "" {
				name = filepath.Base(path)
			}
			bar := a.newProgress("upload " + name)
			d, err := a.client().UploadDataset(cmd.Context(), name, f, st.Size(), bar.fn())
			bar.done(err == nil)
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(d)
			}
			_, err = fmt.Fprintln(a.stdout, d.ID)
			return err
		},
	}
	c.Flags().StringVar(&name, "name", "", "dataset name (default: the file's base name)")
	return c
}

func (a *app) datasetDownloadCmd() *cobra.Command {
	return a.downloadCmd(&cobra.Command{
		Use:   "download ID",
		Short: "Download a dataset and check its SHA-256",
		Long: "Download a dataset to FILE (default: the dataset's name, in this directory).\n" +
			"The bytes go to FILE.part first, which a rerun resumes (starting again if\n" +
			"the dataset changed); FILE appears only once the SHA-256 matches the\n" +
			"dataset's sha256.",
		Example: "  pwmesh dataset download ds-1 -o scene.npy",
	}, "the dataset's name", datasetDownload)
}

// datasetDownload looks dataset id up and describes its download to the
// file its name gives.
func datasetDownload(ctx context.Context, cl *client.Client, id string) (verifiedDownload, error) {
	d, err := cl.GetDataset(ctx, id)
	if err != nil {
		return verifiedDownload{}, err
	}
	if d.SHA256 == "" {
		return verifiedDownload{}, fmt.Errorf("dataset %s has no sha256 to check a download against", id)
	}
	return verifiedDownload{
		id: id, get: cl.DownloadDatasetFrom, out: datasetFileName(d),
		what: "dataset " + id, owner: "the dataset", desc: "dataset " + id,
		sha256: d.SHA256, size: d.Size, etag: d.CID,
	}, nil
}

// datasetFileName is the file a dataset downloads to by default: the last
// element of its name, so that a name never writes outside this directory,
// or its id when the name gives none.
func datasetFileName(d scheduler.Dataset) string {
	name := filepath.Base(d.Name)
	if d.Name == "" || name == "." || name == ".." || name == string(filepath.Separator) {
		return d.ID
	}
	return name
}

func (a *app) datasetListCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List your datasets",
		Args:  args(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ds, err := a.client().ListDatasets(cmd.Context())
			if err != nil {
				return err
			}
			if a.json {
				if ds == nil {
					ds = []scheduler.Dataset{}
				}
				return a.printJSON(ds)
			}
			tw := a.table()
			fmt.Fprintln(tw, "ID\tNAME\tSIZE\tSHA256\tCREATED")
			for _, d := range ds {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.ID, d.Name, humanBytes(d.Size), short(d.SHA256), fmtTime(d.CreatedAt))
			}
			return tw.Flush()
		},
	}
}

// short abbreviates a hex digest to 12 characters.
func short(hex string) string {
	if len(hex) > 12 {
		return hex[:12]
	}
	return orDash(hex)
}

func (a *app) datasetGetCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show a dataset",
		Args:  args("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			d, err := a.client().GetDataset(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(d)
			}
			tw := a.table()
			fmt.Fprintf(tw, "ID:\t%s\nName:\t%s\nTenant:\t%s\nSize:\t%s (%d bytes)\nCID:\t%s\nSHA256:\t%s\nCreated:\t%s\n",
				d.ID, d.Name, orDash(d.Tenant), humanBytes(d.Size), d.Size, orDash(d.CID), orDash(d.SHA256), fmtTime(d.CreatedAt))
			if d.Job != "" {
				fmt.Fprintf(tw, "Job:\t%s\n", d.Job)
			}
			return tw.Flush()
		},
	}
}

func (a *app) datasetRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm ID",
		Aliases: []string{"delete"},
		Short:   "Delete a dataset",
		Args:    args("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := a.client().DeleteDataset(cmd.Context(), args[0]); err != nil {
				return err
			}
			if a.json {
				return a.printJSON(map[string]any{"id": args[0], "deleted": true})
			}
			_, err := fmt.Fprintf(a.stdout, "removed %s\n", args[0])
			return err
		},
	}
}
