package httpapi

import (
	"encoding/base64"
	"net/http"
	"strconv"

	"github.com/gin-gonic/gin"

	"github.com/cofferhq/coffer"
)

const (
	defaultLimit = 100
	maxLimit     = 1000
)

// page is a parsed ?cursor=&limit= pair. Cursors are opaque to clients: the base64url of the
// last key of the previous page.
type page struct {
	after string
	limit int
}

func parsePage(c *gin.Context) (page, error) {
	p := page{limit: defaultLimit}
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLimit {
			return p, coffer.Errorf(coffer.EINVALID, "limit must be an integer from 1 to %d", maxLimit)
		}
		p.limit = n
	}
	if v := c.Query("cursor"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil || len(b) > 512 {
			return p, coffer.Errorf(coffer.EINVALID, "cursor is not one this server issued")
		}
		p.after = string(b)
	}
	return p, nil
}

// fetch is the number of rows to ask the store for: one more than the page, to learn whether
// another page follows.
func (p page) fetch() int { return p.limit + 1 }

type listBody[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// respondPage writes a page of items converted by view; key gives the cursor of an item.
func respondPage[D any, T any](c *gin.Context, p page, items []D, key func(D) string, view func(D) T) {
	out := listBody[T]{Items: make([]T, 0, min(len(items), p.limit))}
	if len(items) > p.limit {
		items = items[:p.limit]
		out.NextCursor = encodeCursor(key(items[len(items)-1]))
	}
	for _, it := range items {
		out.Items = append(out.Items, view(it))
	}
	c.JSON(http.StatusOK, out)
}

func encodeCursor(key string) string { return base64.RawURLEncoding.EncodeToString([]byte(key)) }
