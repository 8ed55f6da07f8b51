package org.adcsr.srcore

/**
 * A small JSON reader for the model contract (objects → Map, arrays → List, numbers → Double,
 * strings, booleans, null). Hand-written so that `:sr-core` stays free of Android (org.json) and
 * of libraries this project's machines cannot fetch (kotlinx.serialization's runtime).
 */
class JsonException(message: String) : IllegalArgumentException(message)

object Json {
    fun parse(text: String): Any? {
        val r = Reader(text)
        val v = r.value()
        r.skipSpace()
        if (r.i != text.length) r.fail("trailing characters")
        return v
    }

    private class Reader(val s: String) {
        var i = 0

        fun fail(what: String): Nothing = throw JsonException("invalid JSON at character $i: $what")

        fun skipSpace() {
            while (i < s.length && s[i] in " \t\r\n") i++
        }

        fun value(): Any? {
            skipSpace()
            if (i >= s.length) fail("unexpected end")
            return when (s[i]) {
                '{' -> obj()
                '[' -> arr()
                '"' -> str()
                't' -> word("true", true)
                'f' -> word("false", false)
                'n' -> word("null", null)
                else -> num()
            }
        }

        fun word(w: String, v: Any?): Any? {
            if (!s.startsWith(w, i)) fail("expected $w")
            i += w.length
            return v
        }

        fun obj(): Map<String, Any?> {
            i++
            val out = LinkedHashMap<String, Any?>()
            skipSpace()
            if (i < s.length && s[i] == '}') { i++; return out }
            while (true) {
                skipSpace()
                if (i >= s.length || s[i] != '"') fail("expected a key")
                val k = str()
                skipSpace()
                if (i >= s.length || s[i] != ':') fail("expected ':'")
                i++
                out[k] = value()
                skipSpace()
                when (s.getOrNull(i++)) {
                    ',' -> continue
                    '}' -> return out
                    else -> fail("expected ',' or '}'")
                }
            }
        }

        fun arr(): List<Any?> {
            i++
            val out = ArrayList<Any?>()
            skipSpace()
            if (i < s.length && s[i] == ']') { i++; return out }
            while (true) {
                out += value()
                skipSpace()
                when (s.getOrNull(i++)) {
                    ',' -> continue
                    ']' -> return out
                    else -> fail("expected ',' or ']'")
                }
            }
        }

        fun str(): String {
            i++
            val b = StringBuilder()
            while (true) {
                if (i >= s.length) fail("unterminated string")
                val c = s[i++]
                when (c) {
                    '"' -> return b.toString()
                    '\\' -> {
                        val e = s.getOrNull(i++) ?: fail("unterminated escape")
                        when (e) {
                            '"', '\\', '/' -> b.append(e)
                            'b' -> b.append('\b'); 'f' -> b.append('\u000C'); 'n' -> b.append('\n')
                            'r' -> b.append('\r'); 't' -> b.append('\t')
                            'u' -> {
                                if (i + 4 > s.length) fail("short \\u escape")
                                b.append(s.substring(i, i + 4).toIntOrNull(16)?.toChar() ?: fail("bad \\u escape"))
                                i += 4
                            }
                            else -> fail("bad escape \\$e")
                        }
                    }
                    else -> b.append(c)
                }
            }
        }

        fun num(): Double {
            val start = i
            while (i < s.length && (s[i].isDigit() || s[i] in "+-.eE")) i++
            return s.substring(start, i).toDoubleOrNull() ?: fail("expected a value")
        }
    }
}
