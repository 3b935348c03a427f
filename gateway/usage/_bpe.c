/* gateway.usage._bpe: counts the tokens of a text under a tiktoken vocabulary, in 3-5 MB instead of tiktoken's 46.
 *
 * tiktoken's Rust core keeps a 200k-token vocabulary three times over (an encoder map, a decoder map and a sorted
 * list, each entry its own heap allocation). Counting needs only "bytes -> rank": here every token's bytes sit in
 * one buffer, in rank order, found through an open-addressing table of 32-bit ranks. The split into pieces is
 * _pretokenize.c; the merge is tiktoken's byte-pair merge (lowest rank first, leftmost on ties), over an array
 * for short pieces and over a linked list with an indexed heap for long ones, so a megabyte of one letter stays
 * O(n log n). tests/usage/test_bpe.py checks the counts against tiktoken's own.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

#include "_pretokenize.h"

#define NO_RANK UINT32_MAX
#define SHORT_PIECE 128          /* bytes; longer pieces merge through the heap */
#define RELEASE_GIL_BYTES 8192   /* texts this long are counted with the GIL released */
#define MAX_TEXT_BYTES (UINT32_MAX / 2)

typedef struct {
    PyObject_HEAD
    uint8_t *bytes;     /* every token's bytes, in rank order */
    uint32_t *offsets;  /* token r is bytes[offsets[r] .. offsets[r + 1]] */
    uint32_t *slots;    /* rank + 1 of the token hashed to each slot; 0 when empty */
    uint32_t mask;      /* slots - 1; the table is a power of two, at most half full */
    uint32_t size;      /* tokens */
    enum pattern pattern;
} Vocabulary;

static inline uint32_t hash_bytes(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ULL;  /* FNV-1a, then a murmur finaliser for the low bits */
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    return (uint32_t)(h ^ (h >> 33));
}

static uint32_t rank_of(const Vocabulary *v, const uint8_t *p, size_t n) {
    for (uint32_t i = hash_bytes(p, n) & v->mask;; i = (i + 1) & v->mask) {
        uint32_t slot = v->slots[i];
        if (!slot) return NO_RANK;
        uint32_t start = v->offsets[slot - 1];
        if (v->offsets[slot] - start == n && memcmp(v->bytes + start, p, n) == 0) return slot - 1;
    }
}

/* tiktoken's byte_pair_merge over arrays: part i starts at start[i], rank[i] is the rank of parts i and i + 1
 * together. Returns the parts left: the piece's token count. */
static size_t merge_short(const Vocabulary *v, const uint8_t *p, size_t n) {
    uint32_t start[SHORT_PIECE + 1], rank[SHORT_PIECE + 1];
    size_t parts = n + 1;  /* boundaries, the last one at n */
    for (size_t i = 0; i < parts; i++) {
        start[i] = (uint32_t)i;
        rank[i] = i + 2 < parts ? rank_of(v, p + i, 2) : NO_RANK;
    }
#define PAIR(i) ((i) + 3 < parts ? rank_of(v, p + start[i], start[(i) + 3] - start[i]) : NO_RANK)
    for (;;) {
        uint32_t best = NO_RANK;
        size_t at = 0;
        for (size_t i = 0; i + 1 < parts; i++)
            if (rank[i] < best) { best = rank[i]; at = i; }
        if (best == NO_RANK) break;
        if (at > 0) rank[at - 1] = PAIR(at - 1);
        rank[at] = PAIR(at);
        memmove(start + at + 1, start + at + 2, (parts - at - 2) * sizeof *start);
        memmove(rank + at + 1, rank + at + 2, (parts - at - 2) * sizeof *rank);
        parts--;
    }
#undef PAIR
    return parts - 1;
}

/* The same merge for long pieces: parts are a linked list of boundaries (a part runs from i to next[i]) and an
 * indexed min-heap orders them by (rank of merging with the next part, position). 20 bytes per input byte. */
typedef struct { uint32_t *next, *prev, *rank, *pos, *heap, size; } Heap;

static inline int before(const Heap *h, uint32_t a, uint32_t b) {
    return h->rank[a] < h->rank[b] || (h->rank[a] == h->rank[b] && a < b);
}
static inline void place(Heap *h, uint32_t at, uint32_t item) { h->heap[at] = item; h->pos[item] = at; }

static void sift_up(Heap *h, uint32_t at) {
    uint32_t item = h->heap[at];
    while (at > 0 && before(h, item, h->heap[(at - 1) / 2])) {
        place(h, at, h->heap[(at - 1) / 2]);
        at = (at - 1) / 2;
    }
    place(h, at, item);
}

static void sift_down(Heap *h, uint32_t at) {
    uint32_t item = h->heap[at];
    for (;;) {
        uint32_t child = 2 * at + 1;
        if (child >= h->size) break;
        if (child + 1 < h->size && before(h, h->heap[child + 1], h->heap[child])) child++;
        if (!before(h, h->heap[child], item)) break;
        place(h, at, h->heap[child]);
        at = child;
    }
    place(h, at, item);
}

static void reorder(Heap *h, uint32_t item) { sift_up(h, h->pos[item]); sift_down(h, h->pos[item]); }

static void drop(Heap *h, uint32_t item) {
    uint32_t at = h->pos[item], last = h->heap[--h->size];
    if (at < h->size) { place(h, at, last); reorder(h, last); }
}

static int64_t merge_long(const Vocabulary *v, const uint8_t *p, uint32_t n) {
    if ((size_t)n + 1 > SIZE_MAX / (5 * sizeof(uint32_t))) return -1;  /* only on a 32-bit size_t */
    uint32_t *block = PyMem_RawMalloc(5 * ((size_t)n + 1) * sizeof *block);
    if (!block) return -1;
    Heap h = {block, block + n + 1, block + 2 * ((size_t)n + 1), block + 3 * ((size_t)n + 1),
              block + 4 * ((size_t)n + 1), n};
    for (uint32_t i = 0; i < n; i++) {
        h.next[i] = i + 1;
        h.prev[i + 1] = i;
        h.rank[i] = i + 2 <= n ? rank_of(v, p + i, 2) : NO_RANK;
        place(&h, i, i);
    }
    for (uint32_t i = n / 2; i-- > 0;) sift_down(&h, i);
    int64_t parts = n;
    while (h.size && h.rank[h.heap[0]] != NO_RANK) {
        uint32_t at = h.heap[0], gone = h.next[at], after = h.next[gone];
        h.next[at] = after;
        if (after < n) h.prev[after] = at;
        drop(&h, gone);
        h.rank[at] = after < n ? rank_of(v, p + at, h.next[after] - at) : NO_RANK;
        reorder(&h, at);
        if (at > 0) {
            uint32_t left = h.prev[at];
            h.rank[left] = rank_of(v, p + left, after - left);
            reorder(&h, left);
        }
        parts--;
    }
    PyMem_RawFree(block);
    return parts;
}

static int64_t count_tokens(const Vocabulary *v, const uint8_t *s, size_t n) {
    int64_t total = 0;
    for (size_t start = 0; start < n;) {
        size_t end = next_piece(v->pattern, s, n, start), len = end - start;
        if (len == 1 || rank_of(v, s + start, len) != NO_RANK) total += 1;
        else if (len <= SHORT_PIECE) total += (int64_t)merge_short(v, s + start, len);
        else {
            int64_t parts = merge_long(v, s + start, (uint32_t)len);
            if (parts < 0) return parts;
            total += parts;
        }
        start = end;
    }
    return total;
}

/* Loading: a .tiktoken file is one "base64-of-the-token rank" line per token, in rank order. */
static int8_t BASE64[256];

static void init_base64(void) {
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    memset(BASE64, -1, sizeof BASE64);
    for (int i = 0; i < 64; i++) BASE64[(uint8_t)alphabet[i]] = (int8_t)i;
}

/* Decodes base64 in[0..len) into out (NULL: only measures); returns the bytes or -1 if not base64. */
static Py_ssize_t decode_base64(const uint8_t *in, size_t len, uint8_t *out) {
    size_t pad = 0;
    while (len && in[len - 1] == '=') { len--; pad++; }
    if (pad > 2 || (pad && (len + pad) % 4) || len % 4 == 1) return -1;
    uint32_t acc = 0;
    Py_ssize_t written = 0;
    for (size_t i = 0; i < len; i++) {
        int8_t value = BASE64[in[i]];
        if (value < 0) return -1;
        acc = (acc << 6) | (uint32_t)value;
        if (i % 4 == 3) {
            if (out) { out[written] = acc >> 16; out[written + 1] = acc >> 8; out[written + 2] = acc; }
            written += 3;
        }
    }
    if (len % 4 == 2) { if (out) out[written] = acc >> 4; written += 1; }
    if (len % 4 == 3) { if (out) { out[written] = acc >> 10; out[written + 1] = acc >> 2; } written += 2; }
    return written;
}

/* Reads the file's lines: with `v->bytes` NULL it counts tokens and bytes, otherwise it fills bytes and offsets. */
static int read_lines(Vocabulary *v, const uint8_t *data, size_t len, size_t *total_bytes) {
    uint32_t line = 0;
    size_t written = 0;
    for (size_t i = 0; i < len;) {
        size_t next = i;
        while (next < len && data[next] != '\n') next++;
        size_t end = next > i && data[next - 1] == '\r' ? next - 1 : next;  /* CRLF files too, as tiktoken reads */
        if (end > i) {
            const uint8_t *space = memchr(data + i, ' ', end - i);
            Py_ssize_t size = space ? decode_base64(data + i, space - (data + i), v->bytes ? v->bytes + written : NULL) : -1;
            uint64_t rank = 0;
            const uint8_t *digit = space ? space + 1 : data + end;
            for (; digit < data + end && *digit >= '0' && *digit <= '9' && rank <= UINT32_MAX; digit++)
                rank = rank * 10 + (uint64_t)(*digit - '0');
            if (size <= 0 || digit != data + end || digit == space + 1 || rank != line) {
                PyErr_Format(PyExc_ValueError, "vocabulary line %u is not 'base64 %u'", line + 1, line);
                return -1;
            }
            if (v->bytes) v->offsets[line] = (uint32_t)written;
            written += (size_t)size;
            line++;
        }
        i = next + 1;
    }
    if (v->bytes) v->offsets[line] = (uint32_t)written;
    v->size = line;
    *total_bytes = written;
    return 0;
}

static int build(Vocabulary *v, const uint8_t *data, size_t len) {
    size_t total;
    if (read_lines(v, data, len, &total) < 0) return -1;
    if (v->size < 256 || v->size > (1u << 30) || total >= UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "not a byte-level BPE vocabulary");
        return -1;
    }
    uint32_t slots = 1;
    while (slots < 2 * v->size) slots <<= 1;
    v->bytes = PyMem_RawMalloc(total ? total : 1);
    v->offsets = PyMem_RawMalloc(((size_t)v->size + 1) * sizeof *v->offsets);
    v->slots = PyMem_RawCalloc(slots, sizeof *v->slots);
    if (!v->bytes || !v->offsets || !v->slots) { PyErr_NoMemory(); return -1; }
    v->mask = slots - 1;
    if (read_lines(v, data, len, &total) < 0) return -1;
    for (uint32_t r = 0; r < v->size; r++) {
        const uint8_t *token = v->bytes + v->offsets[r];
        uint32_t n = v->offsets[r + 1] - v->offsets[r], i = hash_bytes(token, n) & v->mask;
        for (; v->slots[i]; i = (i + 1) & v->mask) {
            uint32_t other = v->slots[i] - 1, start = v->offsets[other];
            if (v->offsets[other + 1] - start == n && memcmp(v->bytes + start, token, n) == 0) {
                PyErr_Format(PyExc_ValueError, "vocabulary lines %u and %u hold the same token", other + 1, r + 1);
                return -1;
            }
        }
        v->slots[i] = r + 1;
    }
    for (int b = 0; b < 256; b++) {  /* single bytes need no merge (count_tokens relies on it) */
        uint8_t byte = (uint8_t)b;
        if (rank_of(v, &byte, 1) == NO_RANK) {
            PyErr_Format(PyExc_ValueError, "vocabulary has no token for the byte 0x%02x", b);
            return -1;
        }
    }
    return 0;
}

static void Vocabulary_dealloc(Vocabulary *self) {
    PyMem_RawFree(self->bytes);
    PyMem_RawFree(self->offsets);
    PyMem_RawFree(self->slots);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Vocabulary_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *keywords[] = {"data", "pattern", NULL};
    Py_buffer data;
    const char *pattern;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y*s:Vocabulary", keywords, &data, &pattern)) return NULL;
    Vocabulary *self = NULL;
    if (strcmp(pattern, "cl100k_base") && strcmp(pattern, "o200k_base")) {
        PyErr_Format(PyExc_ValueError, "no split pattern for %s (known: cl100k_base, o200k_base)", pattern);
    } else if ((self = (Vocabulary *)type->tp_alloc(type, 0))) {
        self->pattern = strcmp(pattern, "o200k_base") ? PATTERN_CL100K : PATTERN_O200K;
        if (build(self, data.buf, (size_t)data.len) < 0) Py_CLEAR(self);
    }
    PyBuffer_Release(&data);
    return (PyObject *)self;
}

/* UTF-8 of text with lone surrogates replaced by U+FFFD, as tiktoken's encode does before encoding. */
static PyObject *utf8_without_surrogates(PyObject *text) {
    PyObject *utf16 = PyUnicode_AsEncodedString(text, "utf-16", "surrogatepass");
    if (!utf16) return NULL;
    PyObject *fixed = PyUnicode_Decode(PyBytes_AS_STRING(utf16), PyBytes_GET_SIZE(utf16), "utf-16", "replace");
    Py_DECREF(utf16);
    if (!fixed) return NULL;
    PyObject *utf8 = PyUnicode_AsUTF8String(fixed);
    Py_DECREF(fixed);
    return utf8;
}

static PyObject *Vocabulary_count(Vocabulary *self, PyObject *text) {
    if (!PyUnicode_Check(text))
        return PyErr_Format(PyExc_TypeError, "count() takes a str, not %.100s", Py_TYPE(text)->tp_name);
    PyObject *utf8 = NULL;
    const uint8_t *s;
    Py_ssize_t n;
#if PY_VERSION_HEX < 0x030C0000
    if (PyUnicode_READY(text) < 0) return NULL;  /* a no-op, deprecated, from 3.12 */
#endif
    if (PyUnicode_IS_ASCII(text)) {
        s = PyUnicode_DATA(text);
        n = PyUnicode_GET_LENGTH(text);
    } else {
        utf8 = PyUnicode_AsUTF8String(text);
        if (!utf8 && PyErr_ExceptionMatches(PyExc_UnicodeEncodeError)) {
            PyErr_Clear();
            utf8 = utf8_without_surrogates(text);
        }
        if (!utf8) return NULL;
        s = (const uint8_t *)PyBytes_AS_STRING(utf8);
        n = PyBytes_GET_SIZE(utf8);
    }
    if ((size_t)n > MAX_TEXT_BYTES) {
        Py_XDECREF(utf8);
        return PyErr_Format(PyExc_ValueError, "text of %zd bytes is too long to count", n);
    }
    int64_t total;
    if (n >= RELEASE_GIL_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        total = count_tokens(self, s, (size_t)n);
        Py_END_ALLOW_THREADS
    } else {
        total = count_tokens(self, s, (size_t)n);
    }
    Py_XDECREF(utf8);
    return total < 0 ? PyErr_NoMemory() : PyLong_FromLongLong(total);
}

static Py_ssize_t Vocabulary_length(Vocabulary *self) { return self->size; }

static PySequenceMethods Vocabulary_as_sequence = {.sq_length = (lenfunc)Vocabulary_length};

static PyObject *Vocabulary_name(Vocabulary *self, void *unused) {
    return PyUnicode_FromString(self->pattern == PATTERN_O200K ? "o200k_base" : "cl100k_base");
}

static PyGetSetDef Vocabulary_getset[] = {
    {"name", (getter)Vocabulary_name, NULL, "the encoding's name", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyMethodDef Vocabulary_methods[] = {
    {"count", (PyCFunction)Vocabulary_count, METH_O, "count(text) -> the number of tokens tiktoken's encode_ordinary gives"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject VocabularyType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "gateway.usage._bpe.Vocabulary",
    .tp_doc = "Vocabulary(data: bytes, pattern: str): a tiktoken file's contents and its encoding's name",
    .tp_basicsize = sizeof(Vocabulary),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = Vocabulary_new,
    .tp_dealloc = (destructor)Vocabulary_dealloc,
    .tp_methods = Vocabulary_methods,
    .tp_as_sequence = &Vocabulary_as_sequence,
    .tp_getset = Vocabulary_getset,
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "gateway.usage._bpe", NULL, -1, NULL};

PyMODINIT_FUNC PyInit__bpe(void) {
    init_base64();
    pretokenize_init();
    if (PyType_Ready(&VocabularyType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Vocabulary", (PyObject *)&VocabularyType) < 0
        || PyModule_AddStringConstant(m, "UNICODE_VERSION", unicode_version()) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
