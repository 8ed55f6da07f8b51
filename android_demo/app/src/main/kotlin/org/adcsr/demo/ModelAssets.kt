package org.adcsr.demo

import android.content.Context
import org.adcsr.srcore.ContractException
import org.adcsr.srcore.ModelContract
import java.io.File
import java.io.FileNotFoundException

/**
 * The models `adcsr export android` staged into `assets/models/`: the contract is checked, then
 * every file is verified (size and sha256) and copied out of the APK once into `filesDir/models/`
 * (the runtimes open files by path, and QNN finds the context `.bin` files beside the `.onnx`).
 * The copy is made in a temporary folder and renamed; the contract is written last, as its stamp.
 */
class ModelAssets(private val context: Context) {
    fun load(): Pair<ModelContract, File> {
        val text = try {
            context.assets.open("models/contract.json").bufferedReader().use { it.readText() }
        } catch (e: FileNotFoundException) {
            throw ContractException(context.getString(R.string.no_models))
        }
        val contract = ModelContract.parse(text)
        val dir = File(context.filesDir, "models")
        val stamp = File(dir, "contract.json")
        if (stamp.isFile && stamp.readText() == text) return contract to dir
        contract.verifyFiles { path -> runCatching { context.assets.open("models/$path") }.getOrNull() }
        val tmp = File(context.filesDir, "models.tmp").apply { deleteRecursively(); mkdirs() }
        for (backend in contract.backends) for (f in backend.files) {
            val dst = File(tmp, f.path).apply { parentFile?.mkdirs() }
            context.assets.open("models/${f.path}").use { input -> dst.outputStream().use { input.copyTo(it, 1 shl 16) } }
        }
        File(tmp, "contract.json").writeText(text)
        dir.deleteRecursively()
        if (!tmp.renameTo(dir)) throw ContractException("could not install the models into ${dir.path}")
        return contract to dir
    }
}
