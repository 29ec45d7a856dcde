package audit

import (
	"encoding/json"
	"testing"
)

func TestRevealedSetJSON(t *testing.T) {
	cases := []struct {
		set  RevealedSet
		want string
	}{
		{nil, `{}`},
		{RevealedSet{{"DB_URL", 3}, {"API_KEY", 1}}, `{"DB_URL":3,"API_KEY":1}`},
		{RevealedSet{{`we"ird<`, 2}}, `{"we\"ird\u003c":2}`},
	}
	for _, c := range cases {
		got, err := json.Marshal(map[string]any{"secrets": c.set})
		if err != nil {
			t.Fatal(err)
		}
		if want := `{"secrets":` + c.want + `}`; string(got) != want {
			t.Errorf("got %s, want %s", got, want)
		}
		var back map[string]map[string]int
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%s is not valid JSON: %v", got, err)
		}
		if len(back["secrets"]) != len(c.set) {
			t.Errorf("%s decodes to %d entries, want %d", got, len(back["secrets"]), len(c.set))
		}
	}
}
