package web

import (
	"net/http"
	"time"

	"cgichat/internal/chat"
	"cgichat/internal/identity"
	"cgichat/internal/store"
)

// TransferLife is how long a transfer code works.
const TransferLife = 5 * time.Minute

// nickResult is the answer to check-nick and redeem: the nick as enforced
// (or as claimed), and how it stands for this browser.
type nickResult struct {
	Nick   string `json:"nick"`
	Status string `json:"status"`
}

// checkNick says at once how "nick" stands for this browser: free, yours,
// taken (someone else holds it, or a nick a reader would take for it) or
// banned, so a page can refuse a taken nick before its first post.
func (h *postHandler) checkNick(c *actionCall) (any, error) {
	if c.req.Nick == nil {
		return nil, chat.Errorf(chat.EInvalid, "Send the nick to check as \"nick\".")
	}
	nick, err := chat.ValidNick(*c.req.Nick)
	if err != nil {
		return nil, err
	}
	key := identity.Key(nick)
	st, err := h.store.NickStatus(c.r.Context(), nick, key, c.claims.Held(key), c.cfg.NickHold)
	return nickResult{Nick: nick, Status: st}, err
}

// transferResult is the answer to transfer.
type transferResult struct {
	Nick    string `json:"nick"`
	Code    string `json:"code"`    // XXXXX-XXXXX
	Expires string `json:"expires"` // RFC 3339 UTC with milliseconds
	Seconds int    `json:"seconds"` // TransferLife
}

// transfer makes a single-use code, valid for TransferLife, that carries
// this browser's claim on "nick" to another device (redeem). Only the
// holder of the nick's current claim gets one; a new code replaces the
// nick's earlier one.
func (h *postHandler) transfer(c *actionCall) (any, error) {
	if c.req.Nick == nil {
		return nil, chat.Errorf(chat.EInvalid, "Send the nick to pass on as \"nick\".")
	}
	nick, err := chat.ValidNick(*c.req.Nick)
	if err != nil {
		return nil, err
	}
	code, hash := identity.NewTransferCode()
	key := identity.Key(nick)
	expires := h.store.Now().Add(TransferLife).UTC()
	claimed, err := h.store.CreateTransfer(c.r.Context(), store.TransferInput{
		NickKey: key, Held: c.claims.Held(key), NickHold: c.cfg.NickHold,
		CodeHash: hash, Expires: expires,
	})
	if err != nil {
		return nil, err
	}
	return transferResult{Nick: claimed, Code: code, Expires: expires.Format(chat.TimeFormat), Seconds: int(TransferLife / time.Second)}, nil
}

// redeem uses up transfer code "code" and gives this browser the claim it
// carries, in the claims cookie: the nick is then this browser's as well
// as the other's. Every try counts against the rate limit on guesses.
func (h *postHandler) redeem(c *actionCall) (any, error) {
	hash, ok := identity.TransferCodeHash(c.req.Code)
	if !ok {
		return nil, chat.Errorf(chat.EInvalid, "A transfer code is 10 letters and digits, such as 7KQ2M-X4PRD.")
	}
	ctx := c.r.Context()
	if err := h.store.TakeGuess(ctx, c.guess()); err != nil {
		return nil, err
	}
	t, err := h.store.RedeemTransfer(ctx, hash)
	if err != nil {
		return nil, err
	}
	http.SetCookie(c.w, h.ids.Cookie(c.claims, identity.Claim{Key: t.NickKey, Issued: t.Issued}, c.fe.https))
	return nickResult{Nick: t.Nick, Status: store.NickYours}, nil
}
