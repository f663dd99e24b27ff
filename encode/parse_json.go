package encode

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// jsonParser is a jsontext.Decoder with the buffer it reads from, kept for
// reuse: a Decoder is large, and it reads a bytes.Buffer's bytes in place.
type jsonParser struct {
	buf bytes.Buffer
	dec jsontext.Decoder
}

var jsonParsers = sync.Pool{New: func() any { return new(jsonParser) }}

// jsonOptions leave duplicate keys to the tree, which says which key, in
// the same words for JSON and CBOR.
var jsonOptions = jsontext.AllowDuplicateNames(true)

// parseJSON reads one JSON object into t. jsontext checks the syntax,
// including that strings are valid UTF-8 with valid escapes, which
// encoding/json would quietly replace; t checks for duplicate keys, which
// encoding/json would let the last one win, and limits depth and size.
// text is data as a string: t's strings are parts of it.
func parseJSON(t *tree, text string, data []byte) error {
	p := jsonParsers.Get().(*jsonParser)
	defer p.release()
	p.buf = *bytes.NewBuffer(data)
	p.dec.Reset(&p.buf, jsonOptions)
	for {
		var err error
		switch p.dec.PeekKind() {
		case '{':
			if _, err = p.dec.ReadToken(); err == nil {
				err = t.begin(kindObject)
			}
		case '[':
			if _, err = p.dec.ReadToken(); err == nil {
				err = t.begin(kindArray)
			}
		case '}', ']':
			if _, err = p.dec.ReadToken(); err == nil {
				err = t.end()
			}
		default: // a scalar, or KindInvalid and the error that ReadValue returns
			err = p.scalar(t, text)
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			// A message cut short, or none: say only that, as a reader of
			// a stream would.
			return io.ErrUnexpectedEOF
		}
		if err != nil {
			return err
		}
		if t.depth == 0 {
			break
		}
	}
	if _, err := p.dec.ReadToken(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	if v := &t.values[0]; v.kind != kindObject {
		return fmt.Errorf("the message is %s, not an object", describe(v))
	}
	return nil
}

// scalar reads a string, number, boolean or null, or a key.
func (p *jsonParser) scalar(t *tree, text string) error {
	raw, err := p.dec.ReadValue()
	if err != nil {
		return err
	}
	// raw is the exact bytes of the value, which ends where the input
	// offset is now; find it in text.
	end := int(p.dec.InputOffset())
	start := end - len(raw)
	if start < 0 || end > len(text) || text[start:end] != string(raw) {
		return errors.New("lost track of the input") // jsontext never does this
	}
	var v value
	switch raw.Kind() {
	case 'n':
		v.kind = kindNull
	case 'f':
		v.kind = kindFalse
	case 't':
		v.kind = kindTrue
	case '0':
		v.kind, v.str = kindNumber, text[start:end]
	case '"':
		v.kind = kindString
		if bytes.IndexByte(raw, '\\') < 0 {
			v.str = text[start+1 : end-1]
		} else {
			b, err := jsontext.AppendUnquote(nil, raw)
			if err != nil {
				return err
			}
			v.str = string(b)
		}
		if t.inObject() && !t.keySet {
			return t.setKey(v.str)
		}
	default:
		return fmt.Errorf("unexpected JSON value %s", truncate(string(raw))) // jsontext never returns one
	}
	_, err = t.add(v)
	return err
}

// release drops the parser's hold on the message and puts it back in the
// pool.
func (p *jsonParser) release() {
	p.buf = bytes.Buffer{}
	p.dec.Reset(&p.buf)
	jsonParsers.Put(p)
}
