package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// SSHServer serves the GitServer's bare repositories over SSH, the way a forge serves deploy
// keys: golang.org/x/crypto/ssh handles the protocol and public-key authentication, and git's
// own git-upload-pack and git-receive-pack do the rest. Repositories are at
// ssh://git@127.0.0.1:PORT/NAME.git.
type SSHServer struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// HostKey is the server's public host key in authorized_keys form ("ssh-ed25519 AAAA...").
	HostKey string
	// KnownHosts is a known_hosts line for the server ("[127.0.0.1]:PORT ssh-ed25519 AAAA...").
	KnownHosts string
	// ClientKeyPEM is the private key (OpenSSH PEM) the server accepts, like a deploy key.
	ClientKeyPEM []byte

	git      *GitServer
	ln       net.Listener
	config   *ssh.ServerConfig
	wg       sync.WaitGroup
	closeOne sync.Once
}

// StartSSHServer serves git's repositories over SSH on 127.0.0.1 with a new host key, accepting
// only a new client key (ClientKeyPEM).
func StartSSHServer(git *GitServer) (*SSHServer, error) {
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("starting ssh server: %w", err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		return nil, fmt.Errorf("starting ssh server: %w", err)
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("starting ssh server: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "deliver testenv deploy key")
	if err != nil {
		return nil, fmt.Errorf("starting ssh server: %w", err)
	}
	allowed, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		return nil, fmt.Errorf("starting ssh server: %w", err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(allowed.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("unknown public key")
		},
	}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("starting ssh server: %w", err)
	}
	hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(hostSigner.PublicKey())))
	s := &SSHServer{
		Addr:         ln.Addr().String(),
		HostKey:      hostKey,
		ClientKeyPEM: pem.EncodeToMemory(block),
		git:          git,
		ln:           ln,
		config:       cfg,
	}
	port := ln.Addr().(*net.TCPAddr).Port
	s.KnownHosts = fmt.Sprintf("[127.0.0.1]:%d %s", port, hostKey)
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// NewSSHServer starts an SSH server for git for the duration of a test.
func NewSSHServer(t testing.TB, git *GitServer) *SSHServer {
	t.Helper()
	s, err := StartSSHServer(git)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// RepoURL is the ssh:// URL of a repository.
func (s *SSHServer) RepoURL(name string) string {
	return "ssh://git@" + s.Addr + "/" + name + ".git"
}

// Close stops the server.
func (s *SSHServer) Close() {
	s.closeOne.Do(func() {
		_ = s.ln.Close()
		s.wg.Wait()
	})
}

func (s *SSHServer) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		go s.handle(conn)
	}
}

func (s *SSHServer) handle(conn net.Conn) {
	defer conn.Close()
	_, chans, reqs, err := ssh.NewServerConn(conn, s.config)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			return
		}
		go s.session(ch, requests)
	}
}

// session runs one "exec" request: git-upload-pack or git-receive-pack on a repository.
func (s *SSHServer) session(ch ssh.Channel, requests <-chan *ssh.Request) {
	defer ch.Close()
	for req := range requests {
		if req.Type != "exec" {
			_ = req.Reply(req.Type == "env", nil)
			continue
		}
		if len(req.Payload) < 4 {
			_ = req.Reply(false, nil)
			return
		}
		n := binary.BigEndian.Uint32(req.Payload)
		command := string(req.Payload[4 : 4+min(int(n), len(req.Payload)-4)])
		program, repo, ok := parseGitCommand(command)
		if !ok {
			_ = req.Reply(false, nil)
			fmt.Fprintf(ch.Stderr(), "unsupported command %q\n", command)
			return
		}
		_ = req.Reply(true, nil)
		cmd := exec.Command("git", program, filepath.Join(s.git.Root, repo))
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		status := uint32(0)
		if err := cmd.Run(); err != nil {
			status = 1
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				status = uint32(ee.ExitCode())
			}
		}
		_, _ = ch.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, status))
		return
	}
}

// parseGitCommand reads "git-upload-pack '/team/config.git'" into ("upload-pack", "team/config.git").
func parseGitCommand(command string) (string, string, bool) {
	prog, arg, ok := strings.Cut(command, " ")
	if !ok || (prog != "git-upload-pack" && prog != "git-receive-pack") {
		return "", "", false
	}
	repo := strings.Trim(strings.TrimSpace(arg), "'\"")
	repo = strings.TrimPrefix(repo, "/")
	if repo == "" || strings.Contains(repo, "..") {
		return "", "", false
	}
	return strings.TrimPrefix(prog, "git-"), repo, true
}
