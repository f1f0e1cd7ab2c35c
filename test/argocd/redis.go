package argocd

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/argocd-agent-addon/argocd-agent-addon/test/proc"
)

// RedisServerEnv may name the redis-server binary; by default it is looked up on PATH
// (Debian package redis-server: `apt-get install -y redis-server`).
const RedisServerEnv = "REDIS_SERVER_BIN"

// StartRedis starts a redis-server on a free port of host (127.0.0.1 if empty), without
// persistence, requiring password if it is not empty (as upstream's Argo CD runs it:
// --requirepass), with dir as its working directory. It returns the address (host:port) and a
// stop function (also called when ctx ends).
func StartRedis(ctx context.Context, dir, host, password string) (addr string, stop func(), err error) {
	if host == "" {
		host = "127.0.0.1"
	}
	bin, err := redisBinary()
	if err != nil {
		return "", nil, err
	}
	// A port found free can be taken before redis binds it; retry a few times.
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := proc.FreePorts(1)
		if err != nil {
			return "", nil, err
		}
		addr = net.JoinHostPort(host, strconv.Itoa(ports[0]))
		args := []string{"--bind", host, "--port", strconv.Itoa(ports[0]),
			"--save", "", "--appendonly", "no", "--dir", dir,
			"--protected-mode", "no", "--daemonize", "no", "--loglevel", "warning"}
		if password != "" {
			args = append(args, "--requirepass", password)
		}
		p, err := proc.Start(ctx, "redis-"+strconv.Itoa(ports[0]), dir, bin, args...)
		if err != nil {
			return "", nil, err
		}
		err = p.WaitFor(ctx, 15*time.Second, "answering PING", func() error { return redisPing(addr, password) })
		if err == nil {
			return addr, p.Stop, nil
		}
		p.Stop()
		if !strings.Contains(p.Log(), "Address already in use") {
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("redis-server: no free port after 3 attempts")
}

func redisBinary() (string, error) {
	name := "redis-server"
	if v := os.Getenv(RedisServerEnv); v != "" {
		name = v
	}
	bin, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found (install Debian's redis-server: apt-get install -y redis-server): %w", name, err)
	}
	return bin, nil
}

// redisPing sends an inline PING (after AUTH, with a password) and expects +PONG.
func redisPing(addr, password string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer func() { _ = c.Close() }()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	r := bufio.NewReader(c)
	if password != "" {
		// RESP array form: the password may hold any byte.
		if _, err := fmt.Fprintf(c, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password); err != nil {
			return err
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if strings.TrimSpace(line) != "+OK" {
			return fmt.Errorf("unexpected AUTH reply %q", line)
		}
	}
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("unexpected PING reply %q", line)
	}
	return nil
}
