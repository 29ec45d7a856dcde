package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/gin-gonic/gin/binding"

	"github.com/cofferhq/coffer"
)

// formBinding binds an HTML form post and reports failures in the API's error shape.
type formBinding struct{}

func (formBinding) Name() string { return "form" }

func (formBinding) Bind(r *http.Request, obj any) error {
	if err := binding.FormPost.Bind(r, obj); err != nil {
		return coffer.Errorf(coffer.EBADREQUEST, "the form could not be read")
	}
	return nil
}

// bindPost reads a POST that scripts send as JSON and browsers as a form into dst, and says
// which it was, so the handler answers in kind; on failure it has answered already.
func (s *Server) bindPost(c *gin.Context, dst any) (wantJSON, ok bool) {
	wantJSON = c.ContentType() == "application/json"
	var err error
	if wantJSON {
		err = decode(c, dst)
	} else {
		err = c.ShouldBindWith(dst, formBinding{})
	}
	if err != nil {
		s.fail(c, err)
		return wantJSON, false
	}
	return wantJSON, true
}
