/* Splits text into the pieces tiktoken's cl100k_base and o200k_base patterns find, without a regex engine.
 *
 * Each function below is one pattern, written out as the backtracking regex (leftmost-first alternation,
 * greedy or possessive quantifiers) would match it at one position: the alternatives in order, each quantifier
 * taking its longest run first and giving back only what the next part needs. The patterns (tiktoken 0.14,
 * tiktoken_ext/openai_public.py):
 *
 * cl100k_base: '(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$
 *              |\s*[\r\n]|\s+(?!\S)|\s
 * o200k_base:  [^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?
 *              |[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?
 *              |\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *
 * Every character starts some alternative, so the pieces cover the text. tests/usage/test_bpe.py checks the
 * pieces' token counts against tiktoken itself on every code point and on generated text.
 */
#include <stddef.h>
#include <stdint.h>

#include "_pretokenize.h"
#include "_unicode_classes.h"

enum { F_L = 1, F_N = 2, F_S = 4, F_CRLF = 8, F_UP = 16, F_LO = 32 };

/* Flags of every code point below U+10000, filled from the ranges by pretokenize_init: one load per character
 * for the scripts most text is in (a binary search over the ~3,300 ranges made CJK text slower than tiktoken). */
static uint8_t BMP_FLAGS[0x10000];

static uint8_t range_flags(uint32_t cp) {
    size_t lo = 0, hi = CLASS_RANGES;  /* the last range starting at or before cp */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (CLASS_RANGE_START[mid] <= cp) lo = mid; else hi = mid;
    }
    return CLASS_RANGE_FLAGS[lo];
}

void pretokenize_init(void) {
    size_t range = 0;
    for (uint32_t cp = 0; cp < 0x10000; cp++) {
        if (cp < 0x80) { BMP_FLAGS[cp] = ASCII_FLAGS[cp]; continue; }
        while (range + 1 < CLASS_RANGES && CLASS_RANGE_START[range + 1] <= cp) range++;
        BMP_FLAGS[cp] = CLASS_RANGE_FLAGS[range];
    }
}

/* Flags of the character at byte i (valid UTF-8, as CPython encodes it); *next is the byte after it.
 * At the end of the text: no flags, and *next == len. */
static inline uint8_t char_at(const uint8_t *s, size_t len, size_t i, size_t *next) {
    if (i >= len) { *next = len; return 0; }
    uint8_t b = s[i];
    if (b < 0x80) { *next = i + 1; return ASCII_FLAGS[b]; }
    if (b < 0xE0) {
        *next = i + 2;
        return BMP_FLAGS[((uint32_t)(b & 0x1F) << 6) | (s[i + 1] & 0x3F)];
    }
    if (b < 0xF0) {
        *next = i + 3;
        return BMP_FLAGS[((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F)];
    }
    *next = i + 4;
    return range_flags(((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12)
                       | ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F));
}

/* [^\r\n\p{L}\p{N}]: the optional first character of a word (a space, punctuation, a mark...). */
static inline int is_word_prefix(uint8_t f) { return !(f & (F_CRLF | F_L | F_N)); }
/* [^\s\p{L}\p{N}]: punctuation and symbols. */
static inline int is_other(uint8_t f) { return !(f & (F_S | F_L | F_N)); }

/* End of the run of characters, from i, that have any of `mask`. */
static size_t run_of(const uint8_t *s, size_t len, size_t i, uint8_t mask) {
    size_t next;
    while (i < len && (char_at(s, len, i, &next) & mask)) i = next;
    return i;
}

static size_t run_of_other(const uint8_t *s, size_t len, size_t i) {
    size_t next;
    while (i < len && is_other(char_at(s, len, i, &next))) i = next;
    return i;
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d) at i: its length in bytes, or 0. Under the regex crate's Unicode case folding
 * `s` also matches U+017F LATIN SMALL LETTER LONG S (bytes C5 BF); no other letter here has a third form. */
static size_t contraction(const uint8_t *s, size_t len, size_t i) {
    if (i + 1 >= len || s[i] != '\'') return 0;
    uint8_t c = s[i + 1] | 0x20;  /* ASCII lower case; non-letters can't match below */
    if (c == 's' || c == 't' || c == 'm' || c == 'd') return s[i + 1] < 0x80 ? 2 : 0;
    if (s[i + 1] == 0xC5 && i + 2 < len && s[i + 2] == 0xBF) return 3;
    if (i + 2 >= len || s[i + 1] >= 0x80 || s[i + 2] >= 0x80) return 0;
    uint8_t d = s[i + 2] | 0x20;
    if ((c == 'r' && d == 'e') || (c == 'v' && d == 'e') || (c == 'l' && d == 'l')) return 3;
    return 0;
}

/* o200k's first alternative from q (after its optional prefix): UPPER* LOWER+ contraction?. 0 if no match. */
static size_t o200k_lower_word(const uint8_t *s, size_t len, size_t q) {
    size_t i = q, next, last_lower_end = 0;
    uint8_t f;
    while (i < len && ((f = char_at(s, len, i, &next)) & F_UP)) {
        if (f & F_LO) last_lower_end = next;  /* where LOWER+ can start if the run gives characters back */
        i = next;
    }
    size_t end;
    if (char_at(s, len, i, &next) & F_LO) end = run_of(s, len, i, F_LO);
    else if (last_lower_end) end = last_lower_end;  /* the characters after it are upper case only */
    else return 0;
    return end + contraction(s, len, end);
}

/* o200k's second alternative from q: UPPER+ LOWER* contraction?. 0 if no match. */
static size_t o200k_upper_word(const uint8_t *s, size_t len, size_t q) {
    size_t end = run_of(s, len, q, F_UP);
    if (end == q) return 0;
    end = run_of(s, len, end, F_LO);
    return end + contraction(s, len, end);
}

/* \s*-style run of white space from p: where it ends, where its last character starts, and the end of its last
 * \r or \n (0 if none). */
typedef struct { size_t end, last_start, last_crlf_end; } Space;

static Space space_run(const uint8_t *s, size_t len, size_t p) {
    Space run = {p, p, 0};
    size_t next;
    uint8_t f;
    while (run.end < len && ((f = char_at(s, len, run.end, &next)) & F_S)) {
        run.last_start = run.end;
        if (f & F_CRLF) run.last_crlf_end = next;
        run.end = next;
    }
    return run;
}

/* \p{N}{1,3}: the number at p, whose first character ends at after_first, and up to two more. */
static size_t up_to_three_numbers(const uint8_t *s, size_t len, size_t after_first) {
    size_t end = after_first, next;
    for (int k = 1; k < 3 && (char_at(s, len, end, &next) & F_N); k++) end = next;
    return end;
}

/* ` ?[^\s\p{L}\p{N}]+` and the \r and \n after it ('/' too with `slash`, o200k): its end, or 0 if no match. */
static size_t punctuation(const uint8_t *s, size_t len, size_t p, int slash) {
    size_t q = s[p] == ' ' ? p + 1 : p, end = run_of_other(s, len, q);
    if (end == q) return 0;
    while (end < len && (s[end] == '\r' || s[end] == '\n' || (slash && s[end] == '/'))) end++;
    return end;
}

static size_t o200k_piece(const uint8_t *s, size_t len, size_t p) {
    size_t after_first, end;
    uint8_t f = char_at(s, len, p, &after_first);
    int prefix = is_word_prefix(f);
    if (prefix && (end = o200k_lower_word(s, len, after_first))) return end;
    if ((end = o200k_lower_word(s, len, p))) return end;
    if (prefix && (end = o200k_upper_word(s, len, after_first))) return end;
    if ((end = o200k_upper_word(s, len, p))) return end;
    if (f & F_N) return up_to_three_numbers(s, len, after_first);
    if ((end = punctuation(s, len, p, 1))) return end;  /* ` ?[^\s\p{L}\p{N}]+[\r\n/]*` */
    if (f & F_S) {
        Space run = space_run(s, len, p);
        if (run.last_crlf_end) return run.last_crlf_end;  /* \s*[\r\n]+ */
        if (run.end == len) return len;  /* \s+(?!\S) at the end of the text */
        if (run.last_start > p) return run.last_start;  /* \s+(?!\S): all but the last before a non-space */
        return run.end;  /* \s+ */
    }
    return after_first;  /* unreachable: every character starts one of the alternatives */
}

static size_t cl100k_piece(const uint8_t *s, size_t len, size_t p) {
    size_t after_first, end;
    if (s[p] == '\'' && (end = contraction(s, len, p))) return p + end;
    uint8_t f = char_at(s, len, p, &after_first);
    size_t q = is_word_prefix(f) ? after_first : p;  /* [^\r\n\p{L}\p{N}]?+\p{L}++ */
    if (char_at(s, len, q, &end) & F_L) return run_of(s, len, q, F_L);
    if (f & F_N) return up_to_three_numbers(s, len, after_first);  /* possessive: the same here */
    if ((end = punctuation(s, len, p, 0))) return end;  /* ` ?[^\s\p{L}\p{N}]++[\r\n]*+` */
    if (f & F_S) {
        Space run = space_run(s, len, p);
        if (run.end == len) return len;  /* \s++$ */
        if (run.last_crlf_end) return run.last_crlf_end;  /* \s*[\r\n] */
        if (run.last_start > p) return run.last_start;  /* \s+(?!\S) */
        return after_first;  /* \s */
    }
    return after_first;  /* unreachable, as above */
}

size_t next_piece(enum pattern pattern, const uint8_t *text, size_t len, size_t start) {
    return pattern == PATTERN_O200K ? o200k_piece(text, len, start) : cl100k_piece(text, len, start);
}

const char *unicode_version(void) { return UNICODE_VERSION; }
