package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/wasmfabric/fabric/fabric"
)

// Module signing on the command line: keys are PEM files (PKCS #8 for the
// private key, PKIX for the public one, as openssl genpkey -algorithm
// ed25519 makes them), and a signature is a file of one base64 line,
// FILE.wasm.sig beside the module by default.

// newModuleKeygenCmd is `fabric module keygen`.
func newModuleKeygenCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Make an ed25519 key pair to sign modules with: FILE (private, 0600) and FILE.pub",
		Long: `Keygen writes a new private key to FILE (readable by its owner only) and its
public key to FILE.pub. Give the public key to a tenant (fabric tenant key add)
and sign modules with the private one (fabric module sign).`,
		Example: "  fabric module keygen --out acme-signing\n  fabric tenant key add acme --key acme-signing.pub",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out FILE: where to write the key")
			}
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			privDER, err := x509.MarshalPKCS8PrivateKey(priv)
			if err != nil {
				return err
			}
			pubDER, err := x509.MarshalPKIXPublicKey(pub)
			if err != nil {
				return err
			}
			if err := writeNew(out, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}), 0o600); err != nil {
				return err
			}
			if err := writeNew(out+".pub", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (private) and %s.pub (public); key ID %s\n", out, out, fabric.SigningKeyID(pub))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the private key to (FILE.pub gets the public key)")
	return cmd
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, b []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// newModuleSignCmd is `fabric module sign`.
func newModuleSignCmd() *cobra.Command {
	var key, out string
	cmd := &cobra.Command{
		Use:   "sign FILE.wasm --key KEY",
		Short: "Sign a module with a private key: writes FILE.wasm.sig, which submit and upload send",
		Long: `Sign writes the signature of FILE.wasm by the private key KEY (from fabric
module keygen, or openssl genpkey -algorithm ed25519) to FILE.wasm.sig, or
--out. fabric submit, job submit and upload send FILE.wasm.sig with the module
when it is there (or --signature): a tenant with signing keys runs only
modules signed with one of them.`,
		Example: "  fabric module sign job.wasm --key acme-signing\n  fabric submit job.wasm",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if key == "" {
				return errors.New("--key KEY: the private key to sign with")
			}
			priv, err := readPrivateKey(key)
			if err != nil {
				return err
			}
			module, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			out = firstNonEmpty(out, args[0]+".sig")
			sig := base64.StdEncoding.EncodeToString(fabric.SignModule(priv, module)) + "\n"
			if err := os.WriteFile(out, []byte(sig), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: module %s signed by key %s\n", out, fabric.ModuleDigest(module)[:12], fabric.SigningKeyID(priv.Public().(ed25519.PublicKey)))
			return nil
		},
	}
	cmd.Flags().StringVar(&key, "key", "", "the private key file (PEM, PKCS #8)")
	cmd.Flags().StringVar(&out, "out", "", "where to write the signature (default: FILE.wasm.sig)")
	return cmd
}

func readPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: not a PEM private key (fabric module keygen makes one)", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, not an ed25519 key", path, k)
	}
	return priv, nil
}

func readPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: not a PEM public key (fabric module keygen makes FILE.pub)", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T, not an ed25519 key", path, k)
	}
	return pub, nil
}

// moduleSignatureFor returns the signature to send with the module at
// path: the file flag names, else path.sig when it is there, else none.
func moduleSignatureFor(path, flag string) ([]byte, error) {
	file := flag
	if file == "" {
		file = path + ".sig"
		if _, err := os.Stat(file); err != nil {
			return nil, nil
		}
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("--signature: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%s: not a module signature (fabric module sign writes one)", file)
	}
	return sig, nil
}

// newTenantKeyCmd is `fabric tenant key add | list | remove`.
func newTenantKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage a tenant's module signing keys: with any, it runs only modules signed with one",
		Long: `A tenant with signing keys runs only modules signed with one of them (fabric
module sign): a job or upload of its without a good signature is refused, and
its modules that no key of its signs (all of them, when it gets its first key;
those only a removed key signed) stop running for it. Takes the cluster's admin
token.`}
	var af, lf, rf clientFlags
	var keyFile, note string
	add := &cobra.Command{
		Use:     "add TENANT --key FILE.pub [--note TEXT]",
		Short:   "Add a public key to a tenant's signing keys",
		Example: "  fabric module keygen --out acme-signing\n  fabric tenant key add acme --key acme-signing.pub --note 'CI'",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if keyFile == "" {
				return errors.New("--key FILE.pub: the public key to add")
			}
			pub, err := readPublicKey(keyFile)
			if err != nil {
				return err
			}
			cl, err := af.client()
			if err != nil {
				return err
			}
			k, err := cl.AddTenantKey(cmd.Context(), args[0], pub, note)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key %s added to tenant %s: it runs only modules signed with one of its keys\n", k.ID, args[0])
			return nil
		},
	}
	af.register(add, false)
	add.Flags().StringVar(&keyFile, "key", "", "the public key file (PEM)")
	add.Flags().StringVar(&note, "note", "", "a note to know the key by")
	list := &cobra.Command{
		Use:   "list TENANT",
		Short: "List a tenant's signing keys",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := lf.client()
			if err != nil {
				return err
			}
			ks, err := cl.TenantKeys(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if lf.output == "json" || lf.output == "yaml" {
				return printAs(cmd.OutOrStdout(), lf.output, ks)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tADDED\tNOTE")
			for _, k := range ks {
				fmt.Fprintf(tw, "%s\t%s\t%s\n", k.ID, k.Added.Local().Format(time.DateTime), k.Note)
			}
			return tw.Flush()
		},
	}
	lf.register(list, true)
	remove := &cobra.Command{
		Use:   "remove TENANT ID",
		Short: "Remove a tenant's signing key: the modules only it signed no longer run for the tenant",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := rf.client()
			if err != nil {
				return err
			}
			if err := cl.RemoveTenantKey(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "key %s removed from tenant %s\n", args[1], args[0])
			return nil
		},
	}
	rf.register(remove, false)
	cmd.AddCommand(add, list, remove)
	return cmd
}
