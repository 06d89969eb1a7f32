package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"path"
	"strconv"
	"strings"

	"cloud.google.com/go/storage"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	gcaws "gocloud.dev/aws"
	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/gcsblob"
	"gocloud.dev/blob/s3blob"
	"google.golang.org/api/option"
)

// Options configures a Store. The zero value gives working defaults.
type Options struct {
	// Prefix is prepended to every key the store writes; default "pwmesh/".
	// A missing trailing "/" is added.
	Prefix string
	// PartSize is the multipart part size in bytes (S3 part, GCS resumable
	// chunk); default 16 MiB. S3 refuses parts under 5 MiB.
	PartSize int
	// Concurrency is how many parts of one object upload at once (S3 only;
	// GCS uploads chunks in order); default 4. An S3 upload buffers about
	// (Concurrency+2)*PartSize bytes (96 MiB by default), a GCS one PartSize.
	Concurrency int
	// Logger receives warnings (a temporary object that could not be
	// deleted); default discards.
	Logger *slog.Logger
}

const (
	defaultPrefix      = "pwmesh/"
	defaultPartSize    = 16 << 20
	defaultConcurrency = 4
	// s3CopyLimit is the largest object S3's CopyObject accepts (5 GiB).
	s3CopyLimit = 5 << 30
	// s3MinPart is the smallest part S3 accepts (but for the last).
	s3MinPart = 5 << 20
)

// Open opens the bucket rawURL names. Supported forms:
//
//	s3://bucket?endpoint=http://127.0.0.1:9000&region=us-east-1&use_path_style=true
//	gs://bucket[?emulator_host=127.0.0.1:4443]
//	file:///absolute/dir
//
// s3:// takes gocloud.dev/aws's parameters (region, endpoint,
// hostname_immutable, profile, anonymous, dualstack, fips, role,
// rate_limiter_capacity, request_checksum_calculation,
// response_checksum_validation), s3blob's use_path_style, disable_https,
// accelerate, ssetype and kmskeyid, and max_attempts (attempts the AWS SDK
// makes per request; its default is 3). Credentials come from the AWS
// environment, or from the URL's user info (s3://KEYID:SECRET@bucket).
//
// gs:// uses Application Default Credentials and takes gcsblob's parameters;
// emulator_host (host:port or http://host:port) points it at an emulator such
// as fake-gcs-server, unauthenticated, as the STORAGE_EMULATOR_HOST
// environment variable (host:port only) does for every gs:// URL.
//
// file:// creates the directory if it is missing.
func Open(ctx context.Context, rawURL string, opts Options) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("mirror: open: %w", err)
	}
	s := &Store{url: redact(u), opts: opts.withDefaults()}
	if s.opts.PartSize < 0 || s.opts.Concurrency < 0 {
		return nil, fmt.Errorf("mirror: open %s: negative PartSize or Concurrency", s.url)
	}
	switch u.Scheme {
	case "s3":
		if s.opts.PartSize < s3MinPart {
			return nil, fmt.Errorf("mirror: open %s: PartSize %d is below S3's minimum of 5 MiB", s.url, s.opts.PartSize)
		}
		s.b, s.s3, err = openS3(ctx, u)
		s.copyLimit = s3CopyLimit
	case "gs":
		s.b, s.gcs, err = openGCS(ctx, u)
	case "file":
		s.b, err = openFile(ctx, u)
	default:
		err = fmt.Errorf("unsupported scheme %q (want s3, gs or file)", u.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("mirror: open %s: %w", s.url, err)
	}
	if s.s3 != nil {
		s.s3Checksum = s.s3.Options().RequestChecksumCalculation
	}
	return s, nil
}

func (o Options) withDefaults() Options {
	if o.Prefix == "" {
		o.Prefix = defaultPrefix
	}
	if !strings.HasSuffix(o.Prefix, "/") {
		o.Prefix += "/"
	}
	if o.PartSize == 0 {
		o.PartSize = defaultPartSize
	}
	if o.Concurrency == 0 {
		o.Concurrency = defaultConcurrency
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// redact returns u without user info, the only place a URL Open accepts
// carries a secret.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// popParam removes key from q and returns its value.
func popParam(q url.Values, key string) (string, bool) {
	v, ok := q[key]
	if !ok {
		return "", false
	}
	q.Del(key)
	return v[0], true
}

func popBool(q url.Values, key string) (val, ok bool, err error) {
	s, ok := popParam(q, key)
	if !ok {
		return false, false, nil
	}
	val, err = strconv.ParseBool(s)
	if err != nil {
		return false, false, fmt.Errorf("parameter %s: %w", key, err)
	}
	return val, true, nil
}

// openS3 builds the S3 client itself, rather than through s3blob's URL
// opener, so that it can take static credentials and max_attempts.
func openS3(ctx context.Context, u *url.URL) (*blob.Bucket, *s3.Client, error) {
	if u.Host == "" {
		return nil, nil, errors.New("missing bucket name")
	}
	q := u.Query()
	var clientOpts []func(*s3.Options)
	for _, key := range []string{"use_path_style", "s3ForcePathStyle"} {
		v, ok, err := popBool(q, key)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			clientOpts = append(clientOpts, func(o *s3.Options) { o.UsePathStyle = v })
		}
	}
	if v, ok, err := popBool(q, "disable_https"); err != nil {
		return nil, nil, err
	} else if ok {
		clientOpts = append(clientOpts, func(o *s3.Options) { o.EndpointOptions.DisableHTTPS = v })
	}
	if v, ok, err := popBool(q, "accelerate"); err != nil {
		return nil, nil, err
	} else if ok {
		clientOpts = append(clientOpts, func(o *s3.Options) { o.UseAccelerate = v })
	}
	if s, ok := popParam(q, "max_attempts"); ok {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return nil, nil, fmt.Errorf("parameter max_attempts: %q is not a positive integer", s)
		}
		clientOpts = append(clientOpts, func(o *s3.Options) { o.RetryMaxAttempts = n })
	}
	var bopts s3blob.Options
	if s, ok := popParam(q, "ssetype"); ok {
		for _, t := range types.ServerSideEncryption("").Values() {
			if strings.EqualFold(string(t), s) {
				bopts.EncryptionType = t
			}
		}
		if bopts.EncryptionType == "" {
			return nil, nil, fmt.Errorf("parameter ssetype: unknown type %q", s)
		}
	}
	if s, ok := popParam(q, "kmskeyid"); ok {
		bopts.KMSEncryptionID = s
	}
	if u.User != nil {
		secret, _ := u.User.Password()
		creds := credentials.NewStaticCredentialsProvider(u.User.Username(), secret, "")
		clientOpts = append(clientOpts, func(o *s3.Options) { o.Credentials = creds })
	}
	cfg, err := gcaws.V2ConfigFromURLParams(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	client := s3.NewFromConfig(cfg, clientOpts...)
	bopts.RequestChecksumCalculation = cfg.RequestChecksumCalculation
	b, err := s3blob.OpenBucket(ctx, client, u.Host, &bopts)
	if err != nil {
		return nil, nil, err
	}
	return b, client, nil
}

// openGCS opens a gs:// URL. With emulator_host it builds an unauthenticated
// client for that endpoint (the Store owns and closes it); otherwise gcsblob's
// own opener handles credentials and STORAGE_EMULATOR_HOST.
func openGCS(ctx context.Context, u *url.URL) (*blob.Bucket, *storage.Client, error) {
	if u.Host == "" {
		return nil, nil, errors.New("missing bucket name")
	}
	q := u.Query()
	emu, ok := popParam(q, "emulator_host")
	if !ok {
		b, err := blob.OpenBucket(ctx, u.String())
		return b, nil, err
	}
	if len(q) > 0 {
		return nil, nil, errors.New("emulator_host takes no other parameters")
	}
	if !strings.Contains(emu, "://") {
		emu = "http://" + emu
	}
	endpoint, err := url.Parse(emu)
	if err != nil || endpoint.Host == "" {
		return nil, nil, fmt.Errorf("parameter emulator_host: %q is not host:port or a URL", emu)
	}
	endpoint.Path = "/storage/v1/"
	client, err := storage.NewClient(ctx, option.WithEndpoint(endpoint.String()), option.WithoutAuthentication())
	if err != nil {
		return nil, nil, err
	}
	b, err := gcsblob.OpenBucket(ctx, nil, u.Host, &gcsblob.Options{Client: client})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return b, client, nil
}

// openFile opens a file:// URL, creating the directory, writing temporary
// files beside their final names (on the same file system, so the rename
// that publishes them works) and no metadata sidecars.
func openFile(ctx context.Context, u *url.URL) (*blob.Bucket, error) {
	if u.Host != "" || !path.IsAbs(u.Path) {
		return nil, errors.New("want file:///absolute/path")
	}
	q := u.Query()
	for key, val := range map[string]string{"create_dir": "true", "no_tmp_dir": "true", "metadata": "skip"} {
		if !q.Has(key) {
			q.Set(key, val)
		}
	}
	c := *u
	c.RawQuery = q.Encode()
	return (&fileblob.URLOpener{}).OpenBucketURL(ctx, &c)
}
