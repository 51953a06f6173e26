package webui

import (
	"net/http"
	"net/url"
)

type webhooksData struct {
	Flash, Error   string
	Endpoints      []Endpoint
	EndpointsNote  string
	CanTest        bool
	Deliveries     []Delivery
	DeliveriesNote string
	NextURL        string
}

// deliveriesShown is a page of the delivery log.
const deliveriesShown = 50

// webhooks serves GET /ui/webhooks: the endpoints, with "send test event",
// and the delivery log, from Config's webhook functions.
func (s *Server) webhooks(w http.ResponseWriter, r *http.Request, sess *session) {
	d := webhooksData{}
	if r.URL.Query().Get("done") == "test" {
		d.Flash = "A test event is queued; it shows in the delivery log once it has been sent."
	}
	s.showWebhooks(w, r, sess, http.StatusOK, d)
}

func (s *Server) showWebhooks(w http.ResponseWriter, r *http.Request, sess *session, status int, d webhooksData) {
	ctx := r.Context()
	d.CanTest = s.cfg.SendTestEvent != nil
	if s.cfg.Endpoints == nil {
		d.EndpointsNote = "Webhook endpoints are not configured in this service."
	} else if eps, err := s.cfg.Endpoints(ctx); err != nil {
		s.log.WarnContext(ctx, "webui: webhook endpoints", "error", err)
		d.EndpointsNote = "The endpoints could not be read just now; reload to try again."
	} else if d.Endpoints = eps; len(eps) == 0 {
		d.EndpointsNote = "No endpoints yet. Add one with POST /v1/webhook-endpoints."
	}
	if s.cfg.Deliveries == nil {
		d.DeliveriesNote = "The webhook delivery log is not configured in this service."
	} else {
		before := r.URL.Query().Get("before")
		list, err := s.cfg.Deliveries(ctx, DeliveryFilter{Before: before, Limit: deliveriesShown + 1})
		switch {
		case err != nil:
			s.log.WarnContext(ctx, "webui: webhook deliveries", "error", err)
			d.DeliveriesNote = "The delivery log could not be read just now; reload to try again."
		case len(list) == 0:
			d.DeliveriesNote = "Nothing delivered yet."
		default:
			if len(list) > deliveriesShown {
				list = list[:deliveriesShown]
				d.NextURL = s.base + "/webhooks?before=" + url.QueryEscape(list[len(list)-1].ID)
			}
			d.Deliveries = list
		}
	}
	s.render(w, r, sess, status, "webhooks", "Webhooks", "webhooks", d)
}

// sendTest serves POST /ui/webhooks/test (form field endpoint).
func (s *Server) sendTest(w http.ResponseWriter, r *http.Request, sess *session) {
	if s.cfg.SendTestEvent == nil {
		s.showWebhooks(w, r, sess, http.StatusNotFound, webhooksData{Error: "Sending test events is not configured in this service."})
		return
	}
	ep := r.PostForm.Get("endpoint")
	if ep == "" {
		s.showWebhooks(w, r, sess, http.StatusBadRequest, webhooksData{Error: "Choose an endpoint."})
		return
	}
	if err := s.cfg.SendTestEvent(r.Context(), ep); err != nil {
		s.log.WarnContext(r.Context(), "webui: send a test event", "endpoint", ep, "error", err)
		s.showWebhooks(w, r, sess, http.StatusServiceUnavailable, webhooksData{Error: "The test event could not be queued. Try again in a moment."})
		return
	}
	s.audit(r, sess, "webhook.test", "", "endpoint="+ep)
	s.redirect(w, r, "/webhooks?done=test")
}
