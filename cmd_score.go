package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/captiongo/captiongo/metrics"
)

func init() {
	register("score", command{
		summary: "score a COCO results file against COCO caption annotations",
		usage:   "-refs REFS.json -hyps HYPS.json",
		setup: func(fs *flag.FlagSet) func([]string) error {
			refs := fs.String("refs", "", "COCO captions annotation file (required)")
			hyps := fs.String("hyps", "", "COCO results file [{image_id, caption}] (required)")
			return func([]string) error {
				if *refs == "" || *hyps == "" {
					return errors.New("-refs and -hyps are required")
				}
				s, err := metrics.ScoreFilesMETEOR(*refs, *hyps, meteorJar())
				if err != nil {
					return err
				}
				b, _ := json.Marshal(s)
				fmt.Println(string(b))
				return nil
			}
		},
	})
}

// meteorJar finds pycocoevalcap's METEOR 1.5 jar and Java, or says on
// stderr why METEOR is left out.
func meteorJar() string {
	jar := metrics.FindMeteorJar()
	if jar == "" {
		fmt.Fprintln(
			os.Stderr,
			"note: METEOR left out: it needs Java and pycocoevalcap's meteor-1.5.jar (make setup puts one in .venv; or set "+
				"CAPTIONGO_METEOR_JAR)",
		)
	}
	return jar
}
