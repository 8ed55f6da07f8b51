package org.adcsr.srcore

import java.io.InputStream
import java.security.MessageDigest

/**
 * What `adcsr export android` promises about the models it stages into the app's assets
 * (`models/contract.json`): the LR tile, the I/O names, shapes and dtypes, the value range, the
 * scale, the colour-fix policy, and each backend's files with their sha256. The app checks it at
 * start and refuses a mismatched one with one clear message ([ContractException]).
 */
class ContractException(message: String) : IllegalStateException(message)

data class ModelFile(val path: String, val sha256: String, val bytes: Long)

data class Backend(val id: String, val kind: String, val label: String, val precision: String, val files: List<ModelFile>) {
    /** The file the runtime opens (the QNN EPContext .onnx, the .pte); the rest are beside it. */
    val entry: ModelFile get() = files.first()
}

data class ModelContract(
    val scale: Int,
    val tile: Int,
    val multiple: Int,
    val overlap: Int,
    val inputName: String,
    val outputName: String,
    val colorFix: ColorFix,
    val backends: List<Backend>,
) {
    /** Checks every backend's files against their recorded size and sha256; [open] gives a
     * file's bytes by its contract path (the app: its assets), or null when it is missing. */
    fun verifyFiles(open: (String) -> InputStream?) {
        for (b in backends) for (f in b.files) {
            val stream = open(f.path) ?: throw ContractException("model file ${f.path} (${b.label}) is missing from the app")
            val digest = MessageDigest.getInstance("SHA-256")
            var size = 0L
            stream.use { s ->
                val buf = ByteArray(1 shl 16)
                while (true) {
                    val n = s.read(buf)
                    if (n < 0) break
                    digest.update(buf, 0, n)
                    size += n
                }
            }
            val hex = digest.digest().joinToString("") { "%02x".format(it) }
            if (size != f.bytes || hex != f.sha256) {
                throw ContractException("model file ${f.path} does not match the contract (sha256 $hex, expected ${f.sha256}): stage the models again")
            }
        }
    }

    companion object {
        const val FORMAT = "adcsr-android-model/1"
        val BACKEND_KINDS = setOf("onnxruntime-qnn", "executorch-xnnpack", "executorch-qnn")

        fun parse(text: String): ModelContract = try {
            read(Json.parse(text) as? Map<*, *> ?: throw ContractException("the model contract is not a JSON object"))
        } catch (e: JsonException) {
            throw ContractException("the model contract is not valid JSON (${e.message})")
        }

        private fun read(m: Map<*, *>): ModelContract {
            val format = m["format"]
            if (format != FORMAT) throw ContractException("model contract format '$format' is not $FORMAT: update the app or stage the models with this app's adcsr")
            val scale = m.int("scale")
            val tile = m.int("lr_tile")
            val multiple = m.int("multiple")
            val input = m.obj("input")
            val output = m.obj("output")
            val inShape = input.ints("shape")
            val outShape = output.ints("shape")
            if (inShape != listOf(1, 3, tile, tile)) throw ContractException("input shape $inShape does not match the LR tile $tile")
            if (outShape != listOf(1, 3, tile * scale, tile * scale)) throw ContractException("output shape $outShape is not ×$scale of the tile")
            for ((what, io) in listOf("input" to input, "output" to output)) {
                if (io["dtype"] != "float32") throw ContractException("$what dtype ${io["dtype"]} is not float32")
            }
            if (input.ints("range") != listOf(0, 1)) throw ContractException("input range ${input["range"]} is not [0, 1]")
            if (tile % multiple != 0) throw ContractException("the LR tile $tile is not a multiple of $multiple")
            val overlap = m.int("overlap")
            if (overlap < 0 || overlap >= tile) throw ContractException("overlap $overlap is not in [0, $tile)")
            val fix = try { ColorFix.parse(m["color_fix"] as? String ?: "") } catch (e: IllegalArgumentException) {
                throw ContractException(e.message ?: "bad colour fix")
            }
            val backends = (m["backends"] as? List<*> ?: throw ContractException("the model contract lists no backends")).map { raw ->
                val b = raw as? Map<*, *> ?: throw ContractException("a backend entry is not an object")
                val kind = b.str("kind")
                if (kind !in BACKEND_KINDS) throw ContractException("unsupported backend '$kind' (this app runs ${BACKEND_KINDS.joinToString()})")
                val files = (b["files"] as? List<*>)?.map { f ->
                    val fm = f as? Map<*, *> ?: throw ContractException("a file entry is not an object")
                    ModelFile(fm.str("path"), fm.str("sha256"), (fm["bytes"] as? Double)?.toLong() ?: throw ContractException("file ${fm["path"]} has no size"))
                }
                if (files.isNullOrEmpty()) throw ContractException("backend '${b["id"]}' lists no files")
                Backend(b.str("id"), kind, b.str("label"), b.str("precision"), files)
            }
            if (backends.isEmpty()) throw ContractException("the model contract lists no backends")
            return ModelContract(scale, tile, multiple, overlap, input.str("name"), output.str("name"), fix, backends)
        }

        private fun Map<*, *>.str(k: String) = this[k] as? String ?: throw ContractException("the model contract has no '$k'")
        private fun Map<*, *>.obj(k: String) = this[k] as? Map<*, *> ?: throw ContractException("the model contract has no '$k' object")
        private fun Map<*, *>.int(k: String): Int {
            val v = this[k] as? Double ?: throw ContractException("the model contract has no number '$k'")
            if (v != Math.floor(v)) throw ContractException("'$k' is not a whole number: $v")
            return v.toInt()
        }
        private fun Map<*, *>.ints(k: String) = (this[k] as? List<*>)?.map { (it as? Double)?.toInt() }
            ?: throw ContractException("the model contract has no list '$k'")
    }
}
