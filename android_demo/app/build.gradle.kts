plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
    alias(libs.plugins.kotlin.compose)
}

android {
    namespace = "org.adcsr.demo"
    compileSdk = 35

    defaultConfig {
        applicationId = "org.adcsr.demo"
        minSdk = 29  // MediaStore writes without a storage permission; every QNN-capable phone is newer
        targetSdk = 35
        versionCode = 1
        versionName = "0.1.0"
        ndk { abiFilters += listOf("arm64-v8a") }  // the QNN and ExecuTorch runtimes ship arm64 only
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions { jvmTarget = "17" }
    buildFeatures { compose = true }
    androidResources {
        noCompress += listOf("bin", "onnx", "pte")  // the models are copied out of the APK once, not inflated per run
    }
    packaging {
        jniLibs { useLegacyPackaging = true }  // QNN's HTP skeleton libraries are loaded from the extracted lib folder
    }
}

dependencies {
    implementation(project(":sr-core"))
    implementation(platform(libs.compose.bom))
    implementation(libs.compose.ui)
    implementation(libs.compose.material3)
    implementation(libs.compose.tooling.preview)
    implementation(libs.activity.compose)
    implementation(libs.lifecycle.viewmodel.compose)
    implementation(libs.lifecycle.runtime.compose)
    implementation(libs.exifinterface)
    implementation(libs.coroutines.android)
    implementation(libs.onnxruntime.android.qnn)
    implementation(libs.executorch.android)
}
