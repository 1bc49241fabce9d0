/* Output formats. Every command builds one JSON document; this file
 * renders it as json (the document), jsonl (one line per list item),
 * table (aligned columns under a header) or text (key: value lines, or
 * tab-separated rows for lists). JSON carries bytes as base64; text and
 * table show them as escaped text. */
#include "cli.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const format_names[] = {
    [OUT_TEXT] = "text", [OUT_JSON] = "json", [OUT_JSONL] = "jsonl", [OUT_TABLE] = "table"};

/* The fields that hold base64 in JSON. */
static bool is_bytes_field(const char *key)
{
    return strcmp(key, "payload") == 0;
}

int output_format_parse(const char *name, output_format *out)
{
    for (size_t i = 0; i < sizeof format_names / sizeof format_names[0]; i++) {
        if (strcmp(name, format_names[i]) == 0) {
            *out = (output_format)i;
            return 0;
        }
    }
    return -1;
}

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

json_t *json_base64(const void *data, size_t len)
{
    const unsigned char *p = data;
    char *s = malloc((len + 2) / 3 * 4 + 1);
    if (!s)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        if (i + 1 < len)
            v |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < len)
            v |= p[i + 2];
        s[o++] = b64_alphabet[v >> 18];
        s[o++] = b64_alphabet[(v >> 12) & 63];
        s[o++] = i + 1 < len ? b64_alphabet[(v >> 6) & 63] : '=';
        s[o++] = i + 2 < len ? b64_alphabet[v & 63] : '=';
    }
    json_t *j = json_stringn(s, o);
    free(s);
    return j;
}

/* Writes the bytes base64 stands for, escaping what is not printable
 * ASCII as \xNN (and the backslash itself). */
static void put_base64_as_text(FILE *out, const char *b64)
{
    uint32_t acc = 0;
    int bits = 0;
    for (const char *c = b64; *c && *c != '='; c++) {
        const char *at = strchr(b64_alphabet, *c);
        if (!at)
            return;
        acc = (acc << 6) | (uint32_t)(at - b64_alphabet);
        bits += 6;
        if (bits < 8)
            continue;
        bits -= 8;
        unsigned char byte = (unsigned char)(acc >> bits);
        acc &= (1u << bits) - 1;
        if (byte >= 0x20 && byte < 0x7f && byte != '\\')
            fputc(byte, out);
        else
            fprintf(out, "\\x%02x", byte);
    }
}

json_t *json_strings(const char *const *values, size_t count)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < count; i++)
        json_array_append_new(a, json_string(values[i]));
    return a;
}

/* Writes a value as text: arrays joined by sep, objects as k=v. */
static void put_value(FILE *out, const char *key, json_t *v, const char *sep)
{
    size_t i;
    const char *k;
    json_t *item;
    if (!v) /* a row without this column */
        return;
    switch (json_typeof(v)) {
    case JSON_STRING:
        if (is_bytes_field(key))
            put_base64_as_text(out, json_string_value(v));
        else
            fputs(json_string_value(v), out);
        break;
    case JSON_INTEGER:
        fprintf(out, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        fputs(json_is_true(v) ? "true" : "false", out);
        break;
    case JSON_ARRAY:
        json_array_foreach(v, i, item) {
            fputs(i ? sep : "", out);
            put_value(out, key, item, sep);
        }
        break;
    case JSON_OBJECT:
        i = 0;
        json_object_foreach(v, k, item) {
            fprintf(out, "%s%s=", i++ ? sep : "", k);
            put_value(out, k, item, sep);
        }
        break;
    default:
        break;
    }
}

/* A table cell or a text row's field: never empty, so that columns and
 * tab-separated fields stay countable. malloc'd. */
static char *cell(const char *key, json_t *v)
{
    char *s = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&s, &len);
    if (!m)
        return NULL;
    put_value(m, key, v, ",");
    fclose(m);
    if (s && !*s) {
        free(s);
        s = strdup("-");
    }
    return s;
}

static void put_upper(FILE *out, const char *s)
{
    for (; *s; s++)
        fputc(toupper((unsigned char)*s), out);
}

/* Rows are the items' fields in the first item's order. */
static void print_table(json_t *rows, bool header, const char *sep, bool align)
{
    json_t *first = json_array_get(rows, 0);
    size_t ncols = json_object_size(first), nrows = json_array_size(rows);
    if (!ncols)
        return;
    const char **keys = calloc(ncols, sizeof *keys);
    size_t *width = calloc(ncols, sizeof *width);
    char **cells = calloc(ncols * nrows, sizeof *cells);
    if (!keys || !width || !cells)
        goto done;
    size_t c = 0;
    const char *k;
    json_t *v;
    json_object_foreach(first, k, v) {
        keys[c] = k;
        width[c++] = header ? strlen(k) : 0;
    }
    for (size_t r = 0; r < nrows; r++) {
        for (c = 0; c < ncols; c++) {
            char *s = cell(keys[c], json_object_get(json_array_get(rows, r), keys[c]));
            cells[r * ncols + c] = s;
            if (s && strlen(s) > width[c])
                width[c] = strlen(s);
        }
    }
    if (header) {
        for (c = 0; c < ncols; c++) {
            put_upper(stdout, keys[c]);
            if (c + 1 < ncols)
                printf("%*s%s", align ? (int)(width[c] - strlen(keys[c])) : 0, "", sep);
        }
        putchar('\n');
    }
    for (size_t r = 0; r < nrows; r++) {
        for (c = 0; c < ncols; c++) {
            const char *s = cells[r * ncols + c] ? cells[r * ncols + c] : "-";
            if (c + 1 < ncols)
                printf("%-*s%s", align ? (int)width[c] : 0, s, sep);
            else
                fputs(s, stdout);
        }
        putchar('\n');
    }
done:
    for (size_t i = 0; cells && i < ncols * nrows; i++)
        free(cells[i]);
    free(cells);
    free(width);
    free(keys);
}

static void print_fields(json_t *doc)
{
    const char *k;
    json_t *v;
    json_object_foreach(doc, k, v) {
        printf("%s: ", k);
        put_value(stdout, k, v, " ");
        putchar('\n');
    }
}

static void dump_line(json_t *v)
{
    json_dumpf(v, stdout, JSON_COMPACT);
    putchar('\n');
}

static int flushed(void)
{
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fputs("cairnctl: cannot write to stdout\n", stderr);
        return EXIT_LOCAL_IO;
    }
    return 0;
}

/* A document jansson could not build: only out of memory does that (the
 * server's strings are UTF-8, payloads base64). */
static int no_document(void)
{
    fputs("cairnctl: out of memory building the output\n", stderr);
    return EXIT_LOCAL_IO;
}

int output_print(output_format format, json_t *doc, json_t *items)
{
    if (!doc)
        return no_document();
    size_t i;
    json_t *item;
    json_t *one = NULL;
    if (!items && (format == OUT_TABLE)) /* one object: a table of one row */
        items = one = json_pack("[O]", doc);
    switch (format) {
    case OUT_JSON:
        json_dumpf(doc, stdout, JSON_INDENT(2));
        putchar('\n');
        break;
    case OUT_JSONL:
        if (!items)
            dump_line(doc);
        json_array_foreach(items, i, item)
            dump_line(item);
        break;
    case OUT_TABLE:
        print_table(items, true, "  ", true);
        break;
    case OUT_TEXT:
        if (items)
            print_table(items, false, "\t", false);
        else
            print_fields(doc);
        break;
    }
    json_decref(one);
    json_decref(doc);
    return flushed();
}

int output_stream_item(output_format format, json_t *item, bool first)
{
    if (!item)
        return no_document();
    json_t *rows = json_pack("[O]", item);
    if (format == OUT_JSON || format == OUT_JSONL)
        dump_line(item);
    else
        print_table(rows, format == OUT_TABLE && first, "\t", false);
    json_decref(rows);
    json_decref(item);
    return flushed();
}
