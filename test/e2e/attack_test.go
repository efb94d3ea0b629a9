package e2e

import (
	"testing"
)

// TestHostileInput: the page holds against what a stranger can send it or
// make it open, and against a browser that cannot keep what it should.
// A message sent while localStorage is full still goes out.
func TestHostileInput(t *testing.T) {
	// No timing of its own: runs beside the waiting of the others.
	t.Parallel()
	d := deploy(t, setup{})

	t.Run("a message sent while storage is full", func(t *testing.T) {
		const room = "full"
		ann := newPerson(t, "ann").open(d.URL + "#" + room)
		ann.say("ann", "before the storage fills")
		// Another application of this origin (a shared host's site is
		// one origin) filled localStorage up.
		filled := eval[int](ann, `(() => {
			let n = 0;
			for (let size = 1 << 20; size >= 1; ) {
				try {
					localStorage.setItem("other-app " + n, "x".repeat(size));
					n++;
				} catch {
					size >>= 1;
				}
			}
			return n;
		})()`)
		t.Logf("filled localStorage with %d entries", filled)
		ann.submit("", "sent while the storage is full")
		want := []line{{"ann", "before the storage fills"}, {"ann", "sent while the storage is full"}}
		ann.waitMessages(len(want))
		checkLog(t, ann, want)
		ann.waitFor("the outbox to empty", `document.querySelectorAll("#outbox .pending").length === 0`, waitTimeout)
		eval[bool](ann, `(localStorage.clear(), true)`)
	})
}
