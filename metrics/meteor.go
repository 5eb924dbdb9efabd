package metrics

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// FindMeteorJar locates the METEOR 1.5 jar that pycocoevalcap ships: the
// CAPTIONGO_METEOR_JAR variable, else pycocoevalcap in a .venv of the current
// folder or of the executable's parent folder. It returns "" when there is
// none, or when Java is not installed.
func FindMeteorJar() string {
	if _, err := exec.LookPath("java"); err != nil {
		return ""
	}
	if p := os.Getenv("CAPTIONGO_METEOR_JAR"); p != "" {
		if _, err := os.Stat(p); err == nil {
			return p
		}
		return ""
	}
	var roots []string
	if wd, err := os.Getwd(); err == nil {
		roots = append(roots, wd)
	}
	if exe, err := os.Executable(); err == nil {
		roots = append(roots, filepath.Dir(filepath.Dir(exe)))
	}
	for _, r := range roots {
		m, _ := filepath.Glob(
			filepath.Join(r, ".venv", "lib", "python*", "site-packages", "pycocoevalcap", "meteor", "meteor-1.5.jar"),
		)
		if len(m) > 0 {
			return m[0]
		}
	}
	return ""
}

// METEOR scores tokenised hypotheses against tokenised references with the
// METEOR 1.5 jar through Java, exactly as pycocoevalcap's Meteor class drives
// it (java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en -norm; one SCORE line
// per image, then one EVAL line). It returns the corpus score.
func METEOR(jar string, t Tokenized) (float64, error) {
	cmd := exec.Command("java", "-jar", "-Xmx2G", filepath.Base(jar), "-", "-", "-stdio", "-l", "en", "-norm")
	cmd.Dir = filepath.Dir(jar)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 0, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("METEOR: cannot start java: %v", err)
	}
	defer func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
	}()
	r := bufio.NewReader(stdout)
	readLine := func() (string, error) {
		l, err := r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("METEOR (%s): %v: %s", jar, err, strings.TrimSpace(stderr.String()))
		}
		return strings.TrimSpace(l), nil
	}
	eval := "EVAL"
	for i := range t.IDs {
		hyp := strings.ReplaceAll(strings.ReplaceAll(t.Hyps[i], "|||", ""), "  ", " ")
		line := "SCORE ||| " + strings.Join(t.Refs[i], " ||| ") + " ||| " + hyp
		if _, err := fmt.Fprintln(stdin, line); err != nil {
			return 0, err
		}
		stat, err := readLine()
		if err != nil {
			return 0, err
		}
		eval += " ||| " + stat
	}
	if _, err := fmt.Fprintln(stdin, eval); err != nil {
		return 0, err
	}
	for range t.IDs {
		if _, err := readLine(); err != nil {
			return 0, err
		}
	}
	l, err := readLine()
	if err != nil {
		return 0, err
	}
	return strconv.ParseFloat(l, 64)
}

// ScoreAll is Score plus METEOR when jar is not "".
func ScoreAll(ids []string, refs map[string][]string, hyps map[string]string, jar string) (Scores, error) {
	s, err := Score(ids, refs, hyps)
	if err != nil || jar == "" {
		return s, err
	}
	t, err := Tokenize(ids, refs, hyps)
	if err != nil {
		return s, err
	}
	m, err := METEOR(jar, t)
	if err != nil {
		return s, err
	}
	s.METEOR = &m
	return s, nil
}
